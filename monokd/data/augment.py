"""Train-time augmentations of a KITTI frame, with the camera kept consistent.

Every geometric change is an image-plane affine map (2, 3) from original pixels to network
input pixels; the image is warped once with it and P2 is updated with
:func:`monokd.geometry.calib.transform_intrinsics`, so a 3-D box projected with the new P2
lands exactly on the warped image.

Pixel convention (KITTI's, P2's and OpenCV's): integer coordinates are pixel centres, the
image spans [-0.5, W - 0.5].

Horizontal flip: the image is mirrored about its centre (u -> W - 1 - u) and the world about
the camera's y-z plane (x -> -x, rotation_y and alpha -> pi - angle). KITTI's P2 is not
centred (cu != (W - 1) / 2, and it has an offset column), so P2 is updated too:
P2' = F @ P2 @ diag(-1, 1, 1, 1) with F the image flip, i.e. cu -> W - 1 - cu and
P2[0, 3] -> (W - 1) * P2[2, 3] - P2[0, 3]. A mirrored point then projects through P2' to
exactly the flipped pixel. The LiDAR frame is not mirrored: the frame's LiDAR -> camera map
gains the mirror instead (the batch's ``lidar_to_rect``), so LiDAR points and a BEV grid keep
their place and still project onto the flipped image. (MonoDETR keeps P2 and only negates
x, which puts the mirrored box (2 cu - W + 1) pixels off its flipped image, about 22 px on
KITTI.)

Resize (``data.resize``): ``stretch`` maps the (cropped) image edge to edge onto the input,
x and y scaled separately; ``keep_aspect`` (MonoDETR's) scales both axes by input W / crop W
about the crop centre, so rows above and below the input are cut (KITTI 1242x375 -> 1280x386.5,
1.25 rows off the top and the bottom at 1280x384) or, for a taller input, padded with 0;
``pad`` (OpenPCDet's CaDDN) keeps the native scale: the image sits at the input's top-left
corner (a crop of s x the input size offset by t x the image size with scale and shift) and
the rest of the input is padding (the image's padding value is the normalisation mean, so
it is 0 after normalisation, as in CaDDN).

Random scale and shift (MonoDETR's): with probability p a crop of s times the image size
centred at an offset of t times the image size is resized to the input size. ``sampling:
uniform`` draws s uniform in the scale range and t uniform in +-shift; ``gaussian`` (MonoDETR's)
draws s = 1 + scale_sigma * N(0, 1) clipped to the scale range and t = shift_sigma * N(0, 1)
clipped to +-shift. The objects keep their metric 3-D position and P2 absorbs the zoom, so
depth targets stay in metres of the real scene (MonoDETR instead multiplies the depth target by
s and keeps P2).

Photometric: SSD's distortion (brightness, contrast, saturation, hue), then with probability
``channel_swap`` a random permutation of the colour channels (one of the six, identity
included: MonoDETR's p = 0.5). Values are clipped to [0, 255] (MonoDETR's uint8 cast wraps
them around) and hue/saturation are changed in the HSV of the RGB image (MonoDETR converts
its RGB image as if it were BGR).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from monokd.data.kitti import Object3D
from monokd.geometry.boxes import wrap_angle
from monokd.geometry.calib import transform_intrinsics

MIRROR_X = np.diag([-1.0, 1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Augmentation:
    """The random choices made for one frame."""

    flip: bool = False
    scale: float = 1.0  # crop size / image size
    shift: tuple[float, float] = (0.0, 0.0)  # crop centre offset / image size


SAMPLINGS = ("uniform", "gaussian")
RESIZES = ("stretch", "keep_aspect", "pad")


def sample_augmentation(rng: np.random.Generator, cfg: dict) -> Augmentation:
    """Draw flip, scale and shift with the probabilities of ``cfg`` (``data.augment``; see the
    module docstring for ``sampling``, ``scale_sigma`` and ``shift_sigma``)."""
    flip = bool(rng.random() < cfg["flip_prob"])
    if rng.random() >= cfg["scale_prob"]:
        return Augmentation(flip=flip)
    low, high = cfg["scale_range"]
    limit = cfg["shift"]
    sampling = cfg.get("sampling", "uniform")
    if sampling == "gaussian":
        scale = float(np.clip(1.0 + cfg["scale_sigma"] * rng.standard_normal(), low, high))
        shift = tuple(float(s) for s in np.clip(cfg["shift_sigma"] * rng.standard_normal(2), -limit, limit))
    elif sampling == "uniform":
        scale = float(rng.uniform(low, high))
        shift = tuple(float(s) for s in rng.uniform(-limit, limit, 2))
    else:
        raise ValueError(f"data.augment.sampling: {sampling!r} is not one of {SAMPLINGS}")
    return Augmentation(flip, scale, shift)


def flip_affine(width: int) -> np.ndarray:
    """(2, 3) mirror of an image of ``width`` columns: u -> W - 1 - u."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]])


def crop_affine(center, crop_size, output_size) -> np.ndarray:
    """(2, 3) map of the region of ``crop_size`` (w, h) centred at ``center`` (x, y) onto an
    image of ``output_size`` (W, H), edge to edge."""
    sx, sy = output_size[0] / crop_size[0], output_size[1] / crop_size[1]
    x0, y0 = center[0] - crop_size[0] / 2, center[1] - crop_size[1] / 2  # left/top edge
    # Edges sit half a pixel outside the first pixel centre: u' + 0.5 = s (u + 0.5 - x0).
    return np.array([[sx, 0.0, sx * (0.5 - x0) - 0.5], [0.0, sy, sy * (0.5 - y0) - 0.5]])


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """(2, 3) affine ``outer`` after ``inner``."""
    return (_to3x3(outer) @ _to3x3(inner))[:2]


def invert(affine: np.ndarray) -> np.ndarray:
    return np.linalg.inv(_to3x3(affine))[:2]


def _to3x3(affine):
    out = np.eye(3)
    out[:2] = affine
    return out


def input_affine(aug: Augmentation, image_size, input_size, resize: str = "stretch") -> np.ndarray:
    """(2, 3) original pixels -> input pixels for the choices ``aug`` (flip, then crop+resize);
    ``resize`` is ``stretch``, ``keep_aspect`` or ``pad`` (see the module docstring)."""
    if resize not in RESIZES:
        raise ValueError(f"data.resize: {resize!r} is not one of {RESIZES}")
    width, height = image_size
    if resize == "pad":
        crop_w, crop_h = input_size[0] * aug.scale, input_size[1] * aug.scale
        center = (crop_w / 2 + width * aug.shift[0], crop_h / 2 + height * aug.shift[1])
        crop = crop_affine(center, (crop_w, crop_h), input_size)
        return compose(crop, flip_affine(width)) if aug.flip else crop
    center = (width * (0.5 + aug.shift[0]), height * (0.5 + aug.shift[1]))  # edge coordinates
    crop_w = width * aug.scale
    # keep_aspect: the crop as tall as the input's aspect makes it, so that sx = sy.
    crop_h = crop_w * input_size[1] / input_size[0] if resize == "keep_aspect" else height * aug.scale
    crop = crop_affine(center, (crop_w, crop_h), input_size)
    return compose(crop, flip_affine(width)) if aug.flip else crop


def camera_matrix(P2: np.ndarray, affine: np.ndarray, flip: bool) -> np.ndarray:
    """(3, 4) P2 at the input resolution; with ``flip`` the world is mirrored (x -> -x) too."""
    return transform_intrinsics(np.asarray(P2, dtype=np.float64) @ MIRROR_X if flip else P2, affine)


def mirror_objects(objects: list[Object3D]) -> list[Object3D]:
    """The 3-D part of a horizontal flip: x -> -x, rotation_y and alpha -> pi - angle.
    2-D boxes are left to the image affine."""
    return [replace(o, location=o.location * np.array([-1.0, 1.0, 1.0]),
                    rotation_y=float(wrap_angle(math.pi - o.rotation_y)),
                    alpha=float(wrap_angle(math.pi - o.alpha))) for o in objects]


def transform_boxes_2d(boxes: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """(N, 4) x1 y1 x2 y2 through an axis-aligned affine (scale, shift, flip) -> (N, 4)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    xs = boxes[:, [0, 2]] * affine[0, 0] + affine[0, 2]
    ys = boxes[:, [1, 3]] * affine[1, 1] + affine[1, 2]
    return np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], axis=1)


def warp(image: np.ndarray, affine: np.ndarray, output_size, nearest: bool = False, border=0) -> np.ndarray:
    """Warp ``image`` (H, W[, C]) to ``output_size`` (W, H); outside the source is ``border``
    (a number, or one per channel)."""
    import cv2

    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.warpAffine(image, np.asarray(affine, dtype=np.float64), tuple(int(s) for s in output_size),
                          flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=border)


def photometric_distortion(image: np.ndarray, rng: np.random.Generator, brightness: float = 32.0,
                           contrast=(0.5, 1.5), saturation=(0.5, 1.5), hue: float = 18.0,
                           channel_swap: float = 0.0) -> np.ndarray:
    """Random brightness, contrast, saturation and hue (each with p = 0.5; contrast before or
    after the colour changes at random) of an (H, W, 3) uint8 RGB image, then with probability
    ``channel_swap`` a random channel permutation (:func:`swap_channels`)."""
    import cv2

    out = image.astype(np.float32)
    if rng.random() < 0.5:
        out += rng.uniform(-brightness, brightness)
    contrast_first = rng.random() < 0.5
    gain = rng.uniform(*contrast) if rng.random() < 0.5 else None
    if contrast_first and gain is not None:
        out *= gain
    sat = rng.uniform(*saturation) if rng.random() < 0.5 else None
    shift = rng.uniform(-hue, hue) if rng.random() < 0.5 else None
    if sat is not None or shift is not None:
        hsv = cv2.cvtColor(np.clip(out, 0, 255) / 255.0, cv2.COLOR_RGB2HSV)  # H in degrees
        if sat is not None:
            hsv[..., 1] = np.clip(hsv[..., 1] * sat, 0, 1)
        if shift is not None:
            hsv[..., 0] = (hsv[..., 0] + shift) % 360.0
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0
    if not contrast_first and gain is not None:
        out *= gain
    out = np.clip(out, 0, 255).astype(np.uint8)
    return swap_channels(out, rng) if channel_swap > 0 and rng.random() < channel_swap else out


CHANNEL_ORDERS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))


def swap_channels(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) with its channels in one of the six orders, drawn uniformly (SSD's "lighting
    noise", identity included, as in MonoDETR)."""
    return np.ascontiguousarray(image[..., list(CHANNEL_ORDERS[rng.integers(len(CHANNEL_ORDERS))])])
