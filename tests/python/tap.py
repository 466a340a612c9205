# SPDX-License-Identifier: Apache-2.0
"""Minimal TAP producer for the Python tests (the C tests use tests/tap.h).

    t = Tap()
    t.ok(cond, "what")          # also t.eq(a, b, "what"), t.raises(...)
    t.skip("why", "what")
    t.done()                    # prints the plan, exits 1 on any failure

An exception escaping a test function (t.case) is a failure with its
traceback as diagnostics, never a crash of the whole file.
"""
import sys
import traceback


class Tap:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def _line(self, ok, desc, directive=""):
        self.n += 1
        if not ok:
            self.failed += 1
        desc = " ".join(str(desc).split())
        print("%s %d - %s%s" % ("ok" if ok else "not ok", self.n, desc,
                                directive), flush=True)
        return ok

    def diag(self, msg):
        for line in str(msg).splitlines() or [""]:
            print("# " + line, flush=True)

    def ok(self, cond, desc):
        return self._line(bool(cond), desc)

    def eq(self, got, want, desc):
        ok = self._line(got == want, desc)
        if not ok:
            self.diag("got:  %r\nwant: %r" % (got, want))
        return ok

    def close(self, got, want, tol, desc):
        err = abs(got - want)
        ok = self._line(err <= tol, desc)
        if not ok:
            self.diag("|%r - %r| = %r > %r" % (got, want, err, tol))
        return ok

    def raises(self, exc, fn, desc, check=None):
        """fn() must raise exc; check(e) (optional) must hold for it."""
        try:
            fn()
        except exc as e:  # noqa: BLE001
            if check is not None and not check(e):
                self._line(False, desc)
                self.diag("raised %r, but the check failed" % (e,))
                return None
            self._line(True, desc)
            return e
        except Exception as e:  # noqa: BLE001
            self._line(False, desc)
            self.diag("raised %s instead of %s: %s"
                      % (type(e).__name__, exc.__name__, e))
            return None
        self._line(False, desc)
        self.diag("did not raise %s" % exc.__name__)
        return None

    def skip(self, why, desc):
        self._line(True, desc, " # SKIP " + why)

    def case(self, fn):
        """Runs fn(self); an exception is one failure with the traceback."""
        try:
            fn(self)
        except Exception:  # noqa: BLE001
            self._line(False, "%s raised" % fn.__name__)
            self.diag(traceback.format_exc())
        return fn

    def skip_all(self, why):
        print("1..0 # SKIP " + why, flush=True)
        sys.exit(0)

    def done(self):
        print("1..%d" % self.n, flush=True)
        sys.exit(1 if self.failed else 0)
