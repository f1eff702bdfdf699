#!/usr/bin/env python3
"""Embeds .varlink interface descriptions as C++ string constants."""
import os
import sys

out, inputs = sys.argv[1], sys.argv[2:]
with open(out, "w", encoding="utf-8") as f:
    f.write("// Generated from the .varlink files by embed_varlink.py. Do not edit.\n")
    f.write("#include \"ipc/varlink_interfaces.hpp\"\n\n")
    f.write("namespace twofactor::ipc {\n\n")
    f.write("const std::vector<EmbeddedInterface>& embeddedInterfaces() {\n")
    f.write("    static const std::vector<EmbeddedInterface> all = {\n")
    for path in inputs:
        name = os.path.basename(path)[: -len(".varlink")]
        with open(path, encoding="utf-8") as src:
            text = src.read()
        if ")__varlink__" in text:
            sys.exit(f"{path}: contains the raw-string delimiter")
        f.write(f'        {{"{name}", R"__varlink__({text})__varlink__"}},\n')
    f.write("    };\n    return all;\n}\n\n}  // namespace twofactor::ipc\n")
