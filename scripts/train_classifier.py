r"""Trains the classifier that scores a dataset's samples and writes its weights.

The shipped weights (`jaxgan/eval/assets/`) were written on CPU (jax 0.10.2) by:

    python scripts/train_classifier.py --dataset mnist --data-dir ../shared/data/mnist \
        --out jaxgan/eval/assets/mnist_classifier.msgpack
    python scripts/train_classifier.py --dataset fashion_mnist \
        --data-dir /usr/share/datasets/fashion-mnist \
        --out jaxgan/eval/assets/fashion_mnist_classifier.msgpack

docs/evaluation.md gives their test accuracies. See `--help` for the options.
"""

import sys

from jaxgan.eval.cli import train_classifier_main

if __name__ == "__main__":
    sys.exit(train_classifier_main())
