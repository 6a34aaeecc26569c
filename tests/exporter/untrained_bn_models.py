"""A small research-style AdderNet (samples.addernet_resnet20's adder2d) for the constant-output check:
with fresh BatchNorms (running mean 0, var 1) every AdderConv sum (always < 0) stays negative, the ReLU
zeroes it, and the classifier outputs its bias whatever the input."""
import torch.nn as nn

from samples.addernet_resnet20 import adder2d


def tiny_addernet():
    return nn.Sequential(adder2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         adder2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
