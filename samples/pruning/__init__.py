"""Pruned models written the way the pruning research code writes them (the user's own classes).

Each module has functions that build a model AND apply a deterministic (seeded) pruning, usable as
``--arch samples.pruning.<module>:<function>``; ``<function>.input_shape`` is the example input shape.
Masks live in buffers/parameters, so a saved state_dict loads back into a freshly built model.

* mnist.mlp_pruned            MaskedLinear MLP 784-200-200-10 pruned to [50, 100, 10]
* mnist.convnet_pruned        MaskedConv2d ConvNet [32, 64, 64] -> [8, 16, 32]
* vgg_slim.vgg16_slimmed      VGG-16 (CIFAR) with Network Slimming: BN gamma = beta = 0
* resnet56_l1.resnet56_l1     ResNet-56 with L1-norm filter pruning of each block's first conv
* resnet_l1_data.resnet_l1_data   CIFAR ResNet (depth, dataset, cfg) with the L1 repository's zero-pad shortcut
                              (``x.data``, ``Variable``, conditional ``.cuda()``); cfg = pruned block widths
* preresnet_cs.preresnet_slimmed   pre-activation bottleneck ResNet with channel_selection
* adder_resnet20.adder_resnet20_pruned   AdderNet ResNet-20 (cmc AdderConv2d), slimmed BNs
* densenet_cs.densenet_slimmed     DenseNet-40 (CIFAR) with channel_selection, slimmed BNs
* resnet34_l1.resnet34_l1_pruned   ImageNet ResNet-34 (``resnet34(pretrained, **kwargs)`` taking cfg), L1-pruned

The model classes take the repositories' arguments (``vgg(dataset, depth, cfg)``, ``resnet(depth, dataset,
cfg)``, ``densenet(depth, ..., cfg)``, ``ResNet(depth, dataset, cfg)``, ``resnet34(**kwargs)``) so the pruned
checkpoints load with ``--arch module:class``. ``repo_prune`` re-does the repositories' prune steps (global
|γ| threshold, L1 filter selection, the rebuild from ``cfg``) for the tests.
"""
