"""vaetransfer: how good is a VAE at transfer learning, and which parts of it must be retrained?

Library behind the Snakemake workflow reproducing Bonheme & Grzes, "How good are variational
autoencoders at transfer learning?" (arXiv 2304.10767, 2023).
"""

__version__ = "0.1.0"
