"""Photos, mediapipe face landmarks and the face-mesh topology."""

import collections

import numpy as np
import pytest

from fg3dgs.facemesh import N_LANDMARKS, boundary_loops, mesh_triangles
from fg3dgs.synth.photo import PhotoError, detect_face, load_photo

INNER_LIPS = {78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312,
              311, 310, 415}


@pytest.mark.parametrize("name", ["astronaut", "hopper"])
def test_builtin_photos_have_one_face(name):
    image = load_photo(f"builtin:{name}")
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    face = detect_face(image)
    assert face.points.shape == (N_LANDMARKS, 3)
    w, h = face.image_size
    assert (face.points[:, 0] > 0).all() and (face.points[:, 0] < w).all()
    assert (face.points[:, 1] > 0).all() and (face.points[:, 1] < h).all()
    assert 30 < face.interocular < 0.5 * w


def test_bad_photos(tmp_path, refuses_bad_files):
    with pytest.raises(PhotoError, match="unknown built-in photo"):
        load_photo("builtin:mona")
    refuses_bad_files(lambda path: load_photo(str(path)), PhotoError, tmp_path / "junk.png",
                      missing="does not exist", junk="cannot read")
    with pytest.raises(PhotoError, match="no face found"):
        detect_face(np.full((256, 256, 3), 128, np.uint8))
    face = load_photo("builtin:astronaut")[20:300, 100:380]
    with pytest.raises(PhotoError, match="2 faces found"):
        detect_face(np.concatenate([face, face], axis=1))


def test_mesh_topology():
    tris = mesh_triangles()
    assert tris.shape[1] == 3 and 840 < len(tris) < 900 and tris.max() == 467
    uses = collections.Counter()
    for a, b, c in tris:
        uses.update([tuple(sorted(e)) for e in ((a, b), (b, c), (a, c))])
    assert max(uses.values()) == 2                      # a manifold surface
    loops = sorted(boundary_loops(tris), key=len)
    assert [len(loop) for loop in loops] == [16, 16, 20, 36]   # eyes, mouth, face oval
    assert set(loops[2]) == INNER_LIPS
