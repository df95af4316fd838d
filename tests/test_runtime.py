"""edtalk.runtime: process-level settings generation relies on."""
import platform
import sys

from edtalk.runtime import keep_freed_memory


def test_keep_freed_memory_applies_on_glibc():
    result = keep_freed_memory()
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert result is True
    else:
        assert result is False
