"""A model module that parses the command line when it is imported, as many research `main.py` files do.

Imported by cmc with --arch: it must see an empty command line, not cmc-export's arguments."""
import argparse

import torch
from torch import nn

parser = argparse.ArgumentParser(description="research training script")
parser.add_argument("--depth", type=int, default=8)
parser.add_argument("--lr", type=float, default=0.1)
args = parser.parse_args()


class Net(nn.Module):
    def __init__(self, width=args.depth):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.fc = nn.Linear(width, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def net():
    torch.manual_seed(26)
    return Net()
