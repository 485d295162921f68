"""CaDDN (Reading et al., CVPR 2021) and its pixel-wise GT-depth teacher; see model.py."""
