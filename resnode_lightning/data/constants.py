"""Per-channel normalisation constants of every data set, on the [0, 1] pixel scale.

The only place these numbers live: data modules normalise with ``(x / 255 - mean) / std``.
"""

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
"""As in the paper's code (michaelsdr/resnet_nodes), which copies them from kuangliu/pytorch-cifar."""

CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DIGITS_MEAN = (0.3053,)
DIGITS_STD = (0.3760,)
"""scikit-learn's 8x8 digits: mean and standard deviation of all pixels, values 0..16 divided by 16."""
