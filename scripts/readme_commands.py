"""Run every command block of README.md in a fresh clone, with small budgets (issue #35).

    python scripts/readme_commands.py            # one row per command: ok / FAILED / skipped and why
    python scripts/readme_commands.py --list     # what would be run, with the budget overrides
    python scripts/readme_commands.py --only 3,5 --keep --timeout 300
    python scripts/readme_commands.py --line 117   # only the command on that README line

The blocks, the skip table and the budget rules live in rlexp/analysis/readme_commands.py.
"""

import sys

from rlexp.analysis.readme_commands import main

if __name__ == "__main__":
    sys.exit(main())
