"""Training throughput of jaxgan against the notes' PyTorch code and the best PyTorch.

The README's table (both models, all five strategies, batch 64 and 256, on the CPU; the DCGAN
with fewer timed steps, as its steps are ten times slower):

    python scripts/benchmark.py --data-dir ../shared/data/mnist --model mlp --json mlp.json
    python scripts/benchmark.py --data-dir ../shared/data/mnist --model dcgan --chunk 10 \\
        --repeats 3 --torch-warmup 3 --json dcgan.json

Everything at the default settings: `python scripts/benchmark.py --data-dir ... --json F`.

The same with `torch.compile` for the best PyTorch, and on a GPU (TF32 off on both sides):

    python scripts/benchmark.py --data-dir ../shared/data/mnist --torch-compile \\
        --json benchmark-compile.json
    python scripts/benchmark.py --data-dir ../shared/data/mnist --device cuda \\
        --json benchmark-cuda.json

jaxgan's scaling with the device count (simulated CPU devices), same global batch:

    python scripts/benchmark.py --data-dir ../shared/data/mnist --model mlp \\
        --strategy two_pass --batch-size 256 --devices-sweep 1,2,4 --sweep-only

Cost: `--chunk` (steps per jaxgan dispatch, default 50) times `--repeats` (default 3) timed
steps per measurement, on each side. See `python scripts/benchmark.py --help` and
`parity/benchmark.py`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from parity.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
