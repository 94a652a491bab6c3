"""``prlf-fast data inspect`` prints the file's SHA-256 (hashed in chunks) so a user can compare
a downloaded pickle with a published checksum."""
import hashlib

from prlf_fast.cli import main
from prlf_fast.data import summary
from prlf_fast.data.synthetic import synthesize, write_pickle


def test_inspect_prints_the_files_sha256(tmp_path, capsys, monkeypatch):
    path = tmp_path / "m.pkl"
    write_pickle(synthesize("mosi", 5, 3, 2, seed=1), str(path))
    data = path.read_bytes()
    expected = hashlib.sha256(data).hexdigest()
    monkeypatch.setattr(summary, "SHA_CHUNK", 4096)  # many chunks, and a short last one
    assert len(data) % 4096 and len(data) > 10 * 4096
    assert main(["data", "inspect", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [f"{path}: MMSA pickle", f"sha256 {expected}"]


def test_sha256_of_an_empty_file_and_of_one_exact_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(summary, "SHA_CHUNK", 8)
    for data in (b"", b"12345678"):
        f = tmp_path / "f"
        f.write_bytes(data)
        assert summary.file_sha256(f) == hashlib.sha256(data).hexdigest()
