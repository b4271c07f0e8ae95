"""segbench: the shared library of the benchmark-cnn benchmarks."""

import warnings

# timm/torchvision import a deprecated torch.jit API; the warning says nothing about our runs
# and would be the first thing a user sees above a one-line error.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.interface.*", category=FutureWarning)
