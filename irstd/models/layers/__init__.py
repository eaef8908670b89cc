"""Building blocks shared by the networks of the zoo, SFIM, LIW and the diffusion encoder.

Each topic has its own file; import from the file (``from irstd.models.layers.conv import ConvBNReLU``).
"""
