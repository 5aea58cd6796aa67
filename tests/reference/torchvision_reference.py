"""Write torchvision ResNets with random weights and their outputs, for test_convert.py.

Run with an interpreter that has torchvision (`make torchvision-reference`
sets one up); the test suite's interpreter reads the files with its own
PyTorch. For each model the script writes `<name>.pth` (the state dict) and
`<name>.npz` (the input image batch, channels_last, and torchvision's logits
in eval mode).

    .venv-torchvision/bin/python tests/reference/torchvision_reference.py build/torchvision-reference
"""

import pathlib
import sys

import numpy as np
import torch
import torchvision

# Small inputs and 10 classes keep the files and the test fast; the layout
# of every convolution is the ImageNet network's.
MODELS = ("resnet18", "resnet50", "resnext50_32x4d")
NUM_CLASSES = 10
IMAGE_SHAPE = (2, 64, 64, 3)


def randomize_batch_norm(model, generator):
    """Give every BatchNorm non-trivial statistics, so that a swapped mean and variance shows."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            channels = module.num_features
            module.weight.data = torch.rand(channels, generator=generator) * 0.5 + 0.25
            module.bias.data = torch.randn(channels, generator=generator) * 0.1
            module.running_mean = torch.randn(channels, generator=generator) * 0.1
            module.running_var = torch.rand(channels, generator=generator) + 0.5


def main(folder):
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images = np.random.default_rng(0).normal(size=IMAGE_SHAPE).astype("float32")
    for name in MODELS:
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)(weights=None, num_classes=NUM_CLASSES)
        randomize_batch_norm(model, torch.Generator().manual_seed(1))
        model.eval()
        with torch.no_grad():
            logits = model(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()

        # Write under temporary names and rename, so an interrupted run never
        # leaves a state dict without its matching outputs.
        pth, npz = folder / f"{name}.pth", folder / f"{name}.npz"
        torch.save(model.state_dict(), folder / f".tmp-{name}.pth")
        np.savez(folder / f".tmp-{name}.npz", images=images, logits=logits, torchvision=torchvision.__version__)
        (folder / f".tmp-{name}.pth").replace(pth)
        (folder / f".tmp-{name}.npz").replace(npz)
        print(f"wrote {pth} and {npz}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build/torchvision-reference")
