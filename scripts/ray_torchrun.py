"""One data-parallel rlexp run on a Ray cluster: Ray places one torchrun per node, torchrun
starts the ranks there.

    # a running cluster (RAY_ADDRESS or --address), 2 nodes of 8 GPUs: 16 ranks of one run
    python scripts/ray_torchrun.py --nodes 2 --nproc-per-node 8 --gpus-per-node 8 \\
        --workdir /shared/rlexp -- hparams=ppo_atari env.id=ALE/Breakout-v5 device=cuda

    # this machine only: a Ray instance of its own on 127.0.0.1, 2 ranks
    python scripts/ray_torchrun.py --address local --nodes 1 --nproc-per-node 2 -- hparams=ppo_cartpole

Ray reserves one bundle per node (``--cpus-per-node`` CPUs and ``--gpus-per-node`` GPUs; one
node per bundle with STRICT_SPREAD), asks the first bundle's node for its address and a free
port, and runs ``torchrun --nnodes N --node_rank i --master_addr ... -m rlexp.cli.train
<overrides>`` in each bundle. Node 0 holds rank 0, which owns the run directory: run from a
``--workdir`` that every node sees at the same path (a shared file system), since the other
ranks write their rank<N>.log there and every rank reads the checkpoint on resume. Exits with
the first non-zero exit status of a node.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import uuid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", default=None, help="the cluster (default: RAY_ADDRESS); 'local': a Ray instance of its own here")
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--nproc-per-node", type=int, default=1)
    parser.add_argument("--cpus-per-node", type=float, default=None, help="CPUs reserved per node (default: one per rank)")
    parser.add_argument("--gpus-per-node", type=float, default=0)
    parser.add_argument("--workdir", default=os.getcwd(), help="where rlexp-train runs on every node (outputs/ goes there)")
    parser.add_argument("overrides", nargs="*", help="rlexp-train overrides, after --")
    args = parser.parse_args()
    if args.address == "local":  # Ray's single-machine mode: it listens on 127.0.0.1 only (rlexp/cli/launchers.py)
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    try:
        import ray
        from ray.util.placement_group import placement_group, remove_placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
    except ImportError:
        sys.exit('ray_torchrun: Ray is not installed; pip install -e ".[ray]"')

    if args.address == "local":
        ray.init(address="local", include_dashboard=False, num_cpus=max(int(args.cpus_per_node or args.nproc_per_node), 1))
    else:
        ray.init(address=args.address or os.environ.get("RAY_ADDRESS") or "auto")
    cpus = args.cpus_per_node if args.cpus_per_node is not None else float(args.nproc_per_node)
    bundle = {"CPU": cpus, **({"GPU": args.gpus_per_node} if args.gpus_per_node else {})}
    group = placement_group([dict(bundle) for _ in range(args.nodes)], strategy="STRICT_SPREAD" if args.nodes > 1 else "PACK")
    ray.get(group.ready())
    placed = lambda i: PlacementGroupSchedulingStrategy(placement_group=group, placement_group_bundle_index=i)  # noqa: E731

    @ray.remote(num_cpus=0)
    def master_address() -> tuple[str, int]:
        with socket.socket() as s:
            s.bind(("", 0))
            return ray.util.get_node_ip_address(), s.getsockname()[1]

    @ray.remote
    def node(rank: int, master: str, port: int) -> int:
        import subprocess

        command = [sys.executable, "-m", "torch.distributed.run", f"--nnodes={args.nodes}", f"--node_rank={rank}",
                   f"--nproc_per_node={args.nproc_per_node}", f"--master_addr={master}", f"--master_port={port}",
                   f"--rdzv_id={run_id}", "-m", "rlexp.cli.train", *args.overrides]
        # Ray's CUDA_VISIBLE_DEVICES names this bundle's GPUs: rank i of the node takes the i-th
        return subprocess.run(command, cwd=args.workdir).returncode

    run_id = uuid.uuid4().hex[:12]
    try:
        master, port = ray.get(master_address.options(scheduling_strategy=placed(0)).remote())
        codes = ray.get([node.options(num_cpus=cpus, num_gpus=args.gpus_per_node, scheduling_strategy=placed(i)).remote(i, master, port)
                         for i in range(args.nodes)])
    finally:
        remove_placement_group(group)
        ray.shutdown()
    sys.exit(next((code for code in codes if code != 0), 0))


if __name__ == "__main__":
    main()
