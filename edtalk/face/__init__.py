"""Face detection, template alignment (§7.1), video face tubes (§7.2) and paste-back."""
from .align import (ALIGN_POINTS, TEMPLATE_68, TEMPLATE_SIZE, TemplateCrop, crop_image, crop_video_to_template,
                    estimate_transform, image_landmarks, template_landmark_error, warp_to_template)
from .geometry import CropParams, resize_matrix, umeyama
from .landmarks import BACKENDS, FaceLandmarker, get_landmarker
from .paste import face_mask, paste_back
from .tube import TubeCrop, crop_video, face_tube

__all__ = [
    "ALIGN_POINTS", "BACKENDS", "CropParams", "FaceLandmarker", "TEMPLATE_68", "TEMPLATE_SIZE", "TemplateCrop",
    "TubeCrop", "crop_image", "crop_video", "crop_video_to_template", "estimate_transform", "face_tube",
    "face_mask", "get_landmarker", "image_landmarks", "paste_back", "resize_matrix", "template_landmark_error",
    "umeyama", "warp_to_template",
]
