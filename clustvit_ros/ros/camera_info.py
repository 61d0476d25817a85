"""The camera's calibration for the mask: sensor_msgs/CameraInfo with the mask's header and size."""
from __future__ import annotations

import copy

from sensor_msgs.msg import CameraInfo


def camera_info_topic(image_topic: str) -> str:
    """The camera_info topic next to the resolved `image_topic`, as image_transport names it:
    /cam/image_raw -> /cam/camera_info."""
    return f"{image_topic.rsplit('/', 1)[0]}/camera_info"


def camera_info_for(info: CameraInfo, header, width: int, height: int) -> CameraInfo:
    """`info` for an image of `width` x `height` stamped `header` (the mask).

    When `info` already describes an image of that size (its ROI, or its width x height, divided by
    its binning) only the header changes. Otherwise its binning and ROI are folded into K and P, as
    image_geometry does, and K and P are scaled to the mask, as image_proc's resize does: fx, cx, Tx
    by the width ratio, fy, cy, Ty by the height ratio; the result has no binning and no ROI.
    """
    out = copy.deepcopy(info)
    out.header = header
    bx, by = max(info.binning_x, 1), max(info.binning_y, 1)
    roi = info.roi
    full_w, full_h = (roi.width, roi.height) if roi.width and roi.height else (info.width, info.height)
    if (full_w // bx, full_h // by) == (width, height) or not full_w or not full_h:
        return out
    sx, sy = width / full_w, height / full_h  # mask pixels per full-resolution pixel
    k, p = list(info.k), list(info.p)
    k[0], k[2], k[4], k[5] = k[0] * sx, (k[2] - roi.x_offset) * sx, k[4] * sy, (k[5] - roi.y_offset) * sy
    p[0], p[2], p[3] = p[0] * sx, (p[2] - roi.x_offset) * sx, p[3] * sx
    p[5], p[6], p[7] = p[5] * sy, (p[6] - roi.y_offset) * sy, p[7] * sy
    out.k, out.p = k, p
    out.width, out.height = width, height
    out.binning_x = out.binning_y = 0
    out.roi = type(roi)()
    return out
