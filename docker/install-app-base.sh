#!/bin/sh
# Install the distro into an application image's Python and expose its
# sitecustomize folder at a stable path, for PYTHONPATH.
#
# usage: install-app-base.sh [REQUIREMENT_OR_PIP_ARG...]
#
#   REQUIREMENT  what to install; default 'otel-gevent-distro[otlp]' (the
#                distro, gevent, OpenTelemetry and the OTLP exporters). A local
#                checkout or wheel works too ('/src[otlp]'), and so do pins
#                ('gevent==24.2.1') and pip options.
#
# environment:
#   PYTHON              interpreter to install into (default: python3)
#   SITECUSTOMIZE_LINK  stable path made to point at the distro's sitecustomize
#                       folder (default: /opt/otel-gevent-distro/sitecustomize);
#                       put it first on PYTHONPATH, with OTEL_PYTHON_DISTRO=gevent
#   INSTALLER           uv | pip | auto (default: uv when it is on PATH, else pip)
set -eu

[ $# -gt 0 ] || set -- 'otel-gevent-distro[otlp]'
python=${PYTHON:-python3}
link=${SITECUSTOMIZE_LINK:-/opt/otel-gevent-distro/sitecustomize}
installer=${INSTALLER:-auto}
if [ "$installer" = auto ]; then
    if command -v uv >/dev/null 2>&1; then installer=uv; else installer=pip; fi
fi

case "$installer" in
    uv) uv pip install --quiet --python "$python" --compile-bytecode "$@" ;;
    pip) "$python" -m pip install --quiet --no-cache-dir --disable-pip-version-check "$@" ;;
    *) echo "INSTALLER must be uv, pip or auto, not '$installer'" >&2; exit 2 ;;
esac

# Ask the installed package where its folder is (it differs per Python version).
folder=$(PYTHONPATH= "$python" -m otel_gevent_distro.cli sitecustomize-path)
if [ ! -f "$folder/sitecustomize.py" ]; then
    echo "$0: no sitecustomize.py in $folder" >&2
    exit 1
fi
mkdir -p "$(dirname "$link")"
ln -sfn "$folder" "$link"
echo "sitecustomize folder: $link -> $folder"
