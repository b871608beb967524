"""Pixel statistics: per-channel mean and std that normalise an encoder's input (pixels in [0, 1]).

One home for them: the DINO config and augmentations, `convert` and the encoder files written by
training take their values from here.
"""

PAPER_MEAN = (0.5, 0.5, 0.5)  # pixels to [-1, 1], as the paper's DINO training
PAPER_STD = (0.5, 0.5, 0.5)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # timm's / torchvision's ImageNet statistics
IMAGENET_STD = (0.229, 0.224, 0.225)
