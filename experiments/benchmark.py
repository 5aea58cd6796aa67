"""Side-by-side throughput of keras_resnet, plain Keras and pure PyTorch.

The benchmark lives in `keras_resnet.benchmark` so that the installed
`keras-resnet benchmark` command runs it too; this script is the same with
the options documented there:

    python experiments/benchmark.py [--rounds 3] [--quick] [--data FOLDER]
"""

import sys

from keras_resnet import benchmark

if __name__ == "__main__":
    sys.exit(benchmark.main())
