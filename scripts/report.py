"""Report on a Hydra multirun: report.csv, report.md and learning_curves.png.

    python -m rlexp.cli.train -m hydra/launcher=joblib seed=0,1,2,3 algo=a2c,ppo
    python scripts/report.py outputs/multirun/<time>                 # into that directory
    python scripts/report.py outputs/multirun/<time> --out docs/ --threshold 195

Jobs are grouped by the swept keys except the seed (mean ± std over seeds); jobs that
failed or never ran are listed, not fatal; an Optuna search also shows its best trial.
The logic lives in rlexp/analysis/report.py.
"""

import sys

from rlexp.analysis.report import main

if __name__ == "__main__":
    sys.exit(main())
