"""Building blocks shared by the networks of the zoo and SFIM (paper 002).

Each topic has its own file; import from the file (``from irstd.models.layers.conv import ConvBNReLU``).
"""
