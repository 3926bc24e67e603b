#!/bin/sh
# Build the OpenTelemetry Operator's auto-instrumentation folder for gevent apps.
#
# usage: build-autoinstrumentation.sh TARGET_DIR [REQUIREMENT_OR_PIP_ARG...]
#
#   TARGET_DIR   the folder to fill (the image's /autoinstrumentation)
#   REQUIREMENT  what to install; default 'otel-gevent-distro[otlp]'. A local
#                checkout or wheel works too ('/src[otlp]', './dist/x.whl[otlp]'),
#                and so do extra requirements (instrumentations) and pip options.
#
# environment:
#   PYTHON     interpreter whose version and platform the folder is built for
#              (default: python3). Compiled packages (grpcio, protobuf,
#              wrapt) only load in an application running the same Python
#              minor version on the same libc.
#   INSTALLER  uv | pip | auto (default: uv when it is on PATH, else pip)
#
# It writes nothing outside TARGET_DIR: uv installs by copy, not by hard link
# from its cache (a write into a linked file would land in the cache and in
# every environment linked to it), files are replaced rather than written
# through, and any file that still has another link is made a private copy
# before its mode changes. The folder's modes do not depend on the umask:
# owner read/write, everyone else read (and enter/execute where the owner
# may), nothing group- or world-writable.
#
# What the folder holds and why:
#   * the distro, OpenTelemetry (API, SDK, auto-instrumentation) and the OTLP
#     exporters, installed with --target, world-readable;
#   * the distro's sitecustomize.py in place of auto-instrumentation's: the
#     Operator puts that folder first on PYTHONPATH, and the distro's version
#     patches gevent before anything of OpenTelemetry is imported, then runs
#     the same initialize(), then chains to the application's own
#     sitecustomize (auto-instrumentation's does neither);
#   * NOT gevent, greenlet, zope.event or zope.interface. The application
#     brings its own gevent, built for its Python; the Operator's PYTHONPATH
#     comes before site-packages, so a copy in the folder would shadow it with
#     another version and possibly a C extension built for another Python.
#     An application without gevent still runs: the distro logs one line and
#     telemetry works unpatched.
set -eu
umask 022

if [ $# -lt 1 ]; then
    echo "usage: $0 TARGET_DIR [REQUIREMENT_OR_PIP_ARG...]" >&2
    exit 2
fi
target=$1
shift
[ $# -gt 0 ] || set -- 'otel-gevent-distro[otlp]'
python=${PYTHON:-python3}
installer=${INSTALLER:-auto}
if [ "$installer" = auto ]; then
    if command -v uv >/dev/null 2>&1; then installer=uv; else installer=pip; fi
fi

mkdir -p "$target"
case "$installer" in
    uv) uv pip install --quiet --python "$python" --target "$target" --compile-bytecode --link-mode copy "$@" ;;
    pip) "$python" -m pip install --quiet --no-cache-dir --disable-pip-version-check --no-warn-conflicts --target "$target" "$@" ;;
    *) echo "INSTALLER must be uv, pip or auto, not '$installer'" >&2; exit 2 ;;
esac

# The application's gevent must win: leave it (and what only it needs) out.
for name in gevent greenlet zope.event zope.interface zope_event zope_interface; do
    rm -rf "$target/$name" "$target/$name"-*.dist-info "$target/$name"-*.pth
done
rm -rf "$target/zope/event" "$target/zope/interface"
rmdir "$target/zope" 2>/dev/null || true
# greenlet's C headers (uv: include/greenlet, pip: include/site/pythonX.Y/greenlet)
find "$target/include" -depth -path '*/greenlet*' -exec rm -rf {} + 2>/dev/null || true
find "$target/include" -depth -type d -empty -delete 2>/dev/null || true

# Patch first and chain: the distro's sitecustomize where the Operator looks.
auto="$target/opentelemetry/instrumentation/auto_instrumentation"
own="$target/otel_gevent_distro/sitecustomize/sitecustomize.py"
for required in "$auto/sitecustomize.py" "$own"; do
    if [ ! -f "$required" ]; then
        echo "$0: $required is missing; is the requirement the otel-gevent-distro package?" >&2
        exit 1
    fi
done
# Replace, never write through: the old file may be shared with other places.
rm -f "$auto/sitecustomize.py"
cp "$own" "$auto/sitecustomize.py"
rm -rf "$auto/__pycache__"/sitecustomize.*
# The installer's own lock file is not part of the folder.
rm -f "$target/.lock"

# A file linked from elsewhere (an installer cache) becomes a private copy
# before its mode is set, so the chmod below changes nothing outside.
find "$target" -type f -links +1 -exec sh -c '
    for file; do cp -p "$file" "$file.private" && mv -f "$file.private" "$file"; done
' sh {} +

# The Operator copies the folder as another user: everything readable by all,
# writable by the owner only, whatever the umask of the build was.
chmod -R u+rwX,go=rX "$target"
echo "auto-instrumentation folder ready: $target"
