"""History search with every field given, as IPython's console sends it."""

from conftest import run_cell


def test_history_search_globs_over_this_session(candle_kernel):
    _, kc = candle_kernel
    for code in ["let a = 1;", "let b = 2;", "a + b", "let a = 1;"]:
        run_cell(kc, code)
    reply = kc.history(hist_access_type="search", pattern="let *", unique=False, n=10,
                       raw=True, output=False, reply=True, timeout=10)
    inputs = [h[2] for h in reply["content"]["history"]]
    assert inputs == ["let a = 1;", "let b = 2;", "let a = 1;"]
    reply = kc.history(hist_access_type="search", pattern="let *", unique=True, n=10,
                       raw=True, output=False, reply=True, timeout=10)
    assert [h[2] for h in reply["content"]["history"]] == ["let a = 1;", "let b = 2;"]
    reply = kc.history(hist_access_type="tail", n=1, raw=True, output=True, reply=True, timeout=10)
    assert reply["content"]["history"][0][2] == ["let a = 1;", ""]
