"""The BEV detection core shared by the camera BEV detectors (CaDDN, MonoTAKD's TA and
student) and the LiDAR teacher: frustum-to-voxel lifting, BEV collapse, BEV backbone, anchor
head. Every module reads its grid from one :class:`monokd.geometry.grid.BEVGrid`; see
docs/bev.md."""
