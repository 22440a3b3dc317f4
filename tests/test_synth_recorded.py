"""Recorded Russian speech with phone timings (fg3dgs.synth.festvox_ru): Festival label files
to the generator's phonemes, the held-out tenth, and a clear error where the corpus cannot be
fetched. A tiny corpus is written here; the real one is never needed."""

import numpy as np
import pytest
import soundfile as sf

from fg3dgs.frontend.train import recorded_material
from fg3dgs.synth import festvox_ru as R
from fg3dgs.synth.speech import PAUSE, SpeechError

LABEL = """separator ;
nfields 1
#
0.30000 125 pau
0.40000 125 mm
0.55000 125 aa
0.60000 125 pau
0.65000 125 pau
0.80000 125 sch
0.95000 125 ur
"""


def test_a_label_file_becomes_phonemes():
    ph = R.phonemes_from_label(LABEL, 1.2)
    assert [p.symbol for p in ph] == [PAUSE, "m", "a", PAUSE, "ʃ", "ʊ", PAUSE]
    assert [(p.start, p.end) for p in ph][:4] == [(0.0, 0.3), (0.3, 0.4), (0.4, 0.55),
                                                   (0.55, 0.65)]      # two pauses merged
    assert ph[-1].start == 0.95 and ph[-1].end == 1.2                # the rest is a pause
    cut = R.phonemes_from_label(LABEL, 0.5)                           # audio shorter: cut
    assert cut[-1].symbol == "a" and cut[-1].end == 0.5
    # a soft consonant looks as the hard one; every phone of the set has a mouth target
    assert R.ipa("tt") == R.ipa("t") and R.ipa("ll") == "l"
    from fg3dgs.synth.visemes import is_known
    assert all(is_known(s) or s == PAUSE for s in R.PHONES.values())
    with pytest.raises(SpeechError, match="'qq'"):
        R.ipa("qq")
    with pytest.raises(SpeechError, match="Festival label"):
        R.phonemes_from_label("0.1 125 a\n", 1.0)


def test_every_tenth_recording_is_held_out(tmp_path):
    (tmp_path / "wav").mkdir()
    (tmp_path / "lab").mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        audio = 0.1 * rng.standard_normal((16000, 2)).astype(np.float32)   # stereo: mixed
        sf.write(tmp_path / "wav" / f"ru_{i:04d}.wav", audio, 16000)
        (tmp_path / "lab" / f"ru_{i:04d}.lab").write_text(LABEL)
    held = R.utterances(True, tmp_path)
    rest = R.utterances(False, tmp_path)
    assert [n for n, *_ in held] == ["ru_0009", "ru_0019"] and len(rest) == 18
    name, audio, ph = held[0]
    assert audio.shape == (16000,) and audio.dtype == np.float32 and ph[-1].end == 1.0
    mat = recorded_material(True, tmp_path)
    assert len(mat) == 2 and mat[0][1].shape == (50, 5)       # 50 frames a second
    assert mat[0][1][:, 4].max() == 1 and mat[0][1][0, 4] == 0  # speech marked, not the pause
    sf.write(tmp_path / "wav" / "ru_0009.wav", np.zeros(8000, np.float32), 8000)
    with pytest.raises(SpeechError, match="8000 Hz"):
        R.utterances(True, tmp_path)


def test_without_apt_get_the_fetch_says_what_it_needs(tmp_path, monkeypatch):
    monkeypatch.setenv("FG3DGS_CACHE", str(tmp_path))
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(R.CorpusMissing, match="apt-get and dpkg-deb"):
        R.fetch()
    assert list(tmp_path.iterdir()) == []                       # nothing half-made left
