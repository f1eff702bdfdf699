#!/usr/bin/env python3
"""Splices what twofactord serves into a man page source before scdoc.

  methods.py TWOFACTORD INPUT.scd OUTPUT.scd VARLINK-FILE...

TWOFACTORD --print-methods gives the method table (name and role, from the
daemon's one table); the .varlink files give each interface's errors. A line
"; generated: access-table" in INPUT becomes the table of methods and who may
call them, "; generated: interfaces" the list of interfaces with their
methods and errors. The page cannot drift from the daemon: it is made from it.
"""
import re
import subprocess
import sys

WHO = {"anyone": "anyone", "operator": "operator, admin", "dpo": "dpo, admin", "admin": "admin"}


def method_table(daemon):
    out = subprocess.run([daemon, "--print-methods"], check=True, capture_output=True, text=True).stdout
    table = []
    for line in out.splitlines():
        name, role = line.split()
        if role not in WHO:
            sys.exit("methods.py: unknown role %r for %s" % (role, name))
        table.append((name.rsplit(".", 1)[0], name.rsplit(".", 1)[1], role))
    if not table:
        sys.exit("methods.py: %s --print-methods printed no methods" % daemon)
    return table


def interface_errors(paths):
    errors = {}
    for path in paths:
        text = open(path, encoding="utf-8").read()
        m = re.search(r"^interface\s+(\S+)", text, re.M)
        if m:
            errors[m.group(1)] = re.findall(r"^error\s+(\w+)", text, re.M)
    return errors


def interfaces(table):
    order = []
    for iface, _, _ in table:
        if iface not in order:
            order.append(iface)
    # Introspection first, then the daemon's own interfaces by name.
    return sorted(order, key=lambda i: (not i.startswith("org.varlink."), i))


def words(items):
    items = ["*%s*" % i for i in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def access_table(table):
    rows = ["[[ *Method*", ":< *Who may call it*"]
    for iface in interfaces(table):
        groups = []  # (role, [methods]) in method-name order, same roles together
        for i, method, role in table:
            if i != iface:
                continue
            for g in groups:
                if g[0] == role:
                    g[1].append(method)
                    break
            else:
                groups.append((role, [method]))
        for role, methods in groups:
            rows.append("|  %s.%s" % (iface, ", ".join(methods)))
            rows.append(":  " + WHO[role])
    return "\n".join(rows)


def interface_list(table, errors):
    out = []
    for iface in interfaces(table):
        methods = [m for i, m, _ in table if i == iface]
        out.append("*%s*" % iface)
        line = "\t" + ("Method " if len(methods) == 1 else "Methods ") + words(methods)
        if errors.get(iface):
            line += "; error" + ("s " if len(errors[iface]) > 1 else " ") + words(errors[iface])
        out.append(line + ".")
        out.append("")
    return "\n".join(out).rstrip("\n")


def main():
    daemon, source, output, *varlink = sys.argv[1:]
    table = method_table(daemon)
    errors = interface_errors(varlink)
    missing = [i for i in interfaces(table) if i not in errors]
    if missing:
        sys.exit("methods.py: no .varlink file declares %s" % ", ".join(missing))
    text = open(source, encoding="utf-8").read()
    for marker, content in (("access-table", access_table(table)), ("interfaces", interface_list(table, errors))):
        line = "; generated: %s\n" % marker
        if line not in text:
            sys.exit("methods.py: %s has no line %r" % (source, line.strip()))
        text = text.replace(line, content + "\n")
    with open(output, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
