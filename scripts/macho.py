#!/usr/bin/env python3
"""Checks Mach-O executables for what a Mac needs to run them: on Apple
silicon a code signature (the kernel runs no unsigned arm64 code; zig's
linker signs ad hoc, as Apple's does, arm64 only: Intel Macs need none),
and the minimum macOS version.

    scripts/macho.py MIN_MACOS FILE...     e.g. scripts/macho.py 11.0 target/.../wm-seal
"""
import struct
import sys

LC_CODE_SIGNATURE = 0x1D
LC_BUILD_VERSION = 0x32
MH_MAGIC_64 = 0xFEEDFACF
CPU_TYPE_ARM64 = 0x0100000C
CSMAGIC_EMBEDDED_SIGNATURE = 0xFADE0CC0
CSMAGIC_CODEDIRECTORY = 0xFADE0C02
CS_ADHOC = 0x2


def adhoc(data, dataoff):
    """The signature's CodeDirectory says ad hoc (no certificate)."""
    magic, _length, count = struct.unpack_from(">III", data, dataoff)
    if magic != CSMAGIC_EMBEDDED_SIGNATURE:
        return False
    for i in range(count):
        _kind, blob = struct.unpack_from(">II", data, dataoff + 12 + 8 * i)
        bmagic, _blen, _version, flags = struct.unpack_from(">IIII", data, dataoff + blob)
        if bmagic == CSMAGIC_CODEDIRECTORY:
            return bool(flags & CS_ADHOC)
    return False


def check(path, want_minos):
    data = open(path, "rb").read()
    magic, cpu, _sub, _kind, ncmds, _size, _flags, _ = struct.unpack_from("<IIIIIIII", data, 0)
    if magic != MH_MAGIC_64:
        return f"{path}: not a 64-bit Mach-O file"
    signed, minos, off = False, None, 32
    for _ in range(ncmds):
        cmd, size = struct.unpack_from("<II", data, off)
        if cmd == LC_CODE_SIGNATURE:
            signed = adhoc(data, struct.unpack_from("<I", data, off + 8)[0])
        elif cmd == LC_BUILD_VERSION:
            v = struct.unpack_from("<I", data, off + 12)[0]
            minos = f"{v >> 16}.{(v >> 8) & 0xFF}"
        off += size
    if cpu == CPU_TYPE_ARM64 and not signed:
        return f"{path}: no ad hoc code signature: macOS on Apple silicon will not run it"
    if minos != want_minos:
        return f"{path}: needs macOS {minos}, not {want_minos}: set MACOSX_DEPLOYMENT_TARGET"
    return None


def main():
    want, files = sys.argv[1], sys.argv[2:]
    problems = [p for p in (check(f, want) for f in files) if p]
    for p in problems:
        print(f"macho.py: {p}", file=sys.stderr)
    if not problems:
        print(f"macho.py: {len(files)} executable(s) for macOS {want} and later, arm64 ones signed ad hoc")
    sys.exit(1 if problems else 0)


main()
