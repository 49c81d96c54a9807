"""Audio channel swapping (ACS): 8 rotations/reflections of the sound field made by mixing channels.

Each view is an orthogonal 3x3 matrix ``R`` acting on direction vectors (x front, y left, z up):
azimuth ``phi -> s * phi + k * 90 deg`` (s = +-1, k = 0..3), and for the tetrahedral microphone
array an elevation flip where the array's symmetry needs one. The channel matrix ``M`` (4 x 4) turns
the recorded channels into those of the same scene seen through ``R``; a model's direction ``v'``
from view R maps back to the original frame as ``R.T @ v'``. View 0 is the identity.

- FOA (ACN order W, Y, Z, X): W is kept, [X, Y, Z] -> R [X, Y, Z] (a signed permutation).
- MIC (tetrahedral, STARSS channel order, mics at (az, el) = (45, 35), (-45, -35), (135, -35),
  (-135, 35) degrees): a channel permutation chosen so each mic takes the signal of the mic at the
  rotated position; the elevation sign is whichever keeps the array on itself.
"""
from __future__ import annotations

import numpy as np

MIC_DIRECTIONS_DEG = np.array([[45.0, 35.0], [-45.0, -35.0], [135.0, -35.0], [-135.0, 35.0]])
# (s, k): azimuth -> s * azimuth + k * 90 degrees; identity first.
AZIMUTH_MAPS = ((1, 0), (-1, 0), (1, 1), (-1, 1), (1, 2), (-1, 2), (1, 3), (-1, 3))
N_VIEWS = len(AZIMUTH_MAPS)


def unit_vectors(azimuth_deg, elevation_deg) -> np.ndarray:
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    return np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)


def rotation(s: int, k: int, elevation_sign: int = 1) -> np.ndarray:
    """R with R @ unit(az, el) = unit(s * az + k * 90, elevation_sign * el); exact integers."""
    c, n = [1, 0, -1, 0][k % 4], [0, 1, 0, -1][k % 4]
    rz = np.array([[c, -n, 0], [n, c, 0], [0, 0, 1]], dtype=np.float64)
    return rz @ np.diag([1.0, float(s), float(elevation_sign)])


def foa_views() -> list[tuple[np.ndarray, np.ndarray]]:
    """[(R, M)] for FOA: M acts on (W, Y, Z, X) column vectors."""
    acn = [3, 1, 2]  # x, y, z live in channels X=3, Y=1, Z=2
    out = []
    for s, k in AZIMUTH_MAPS:
        r = rotation(s, k)
        m = np.zeros((4, 4))
        m[0, 0] = 1.0
        for i in range(3):
            for j in range(3):
                m[acn[i], acn[j]] = r[i, j]
        out.append((r, m))
    return out


def mic_views() -> list[tuple[np.ndarray, np.ndarray]]:
    """[(R, M)] for the tetrahedral array: M is the permutation taking mic p(i)'s signal to mic i."""
    mics = unit_vectors(MIC_DIRECTIONS_DEG[:, 0], MIC_DIRECTIONS_DEG[:, 1])
    out = []
    for s, k in AZIMUTH_MAPS:
        for sign in (1, -1):
            r = rotation(s, k, sign)
            # new channel i must hear what the old mic at R^-1 r_i heard
            source = mics @ r  # row i: (R.T @ r_i).T
            match = np.abs(source[:, None, :] - mics[None, :, :]).max(axis=2) < 1e-9
            if (match.sum(axis=1) == 1).all():
                m = match.astype(np.float64)
                out.append((r, m))
                break
        else:  # pragma: no cover - geometry fixed above
            raise AssertionError("tetrahedral array has no symmetry for this azimuth map")
    return out


def views(audio_format: str) -> list[tuple[np.ndarray, np.ndarray]]:
    if audio_format == "foa":
        return foa_views()
    if audio_format == "mic":
        return mic_views()
    raise ValueError(f"audio format {audio_format!r}: use 'foa' or 'mic'")
