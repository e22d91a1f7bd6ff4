def test_ctx_batch(nsshell):
    d = nsshell("-c", "ctx")
    assert d.rc == 0, d
    assert "net:[" in d.out
