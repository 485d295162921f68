"""MonoTAKD (Liu et al. 2025): LiDAR teacher + camera TA -> camera student; the training-only losses."""
