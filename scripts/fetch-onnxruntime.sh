#!/usr/bin/env bash
# fetch-onnxruntime.sh puts the ONNX Runtime shared library that students
# train and serve with at .cache/onnxruntime/<version>/libonnxruntime.so in
# the repository root (or under $CACHE_DIR when set, e.g.
# CACHE_DIR=~/.cache/understudy, where an installed understudy looks), and
# prints its path.
#
# The library comes from the npm package onnxruntime-node (Linux x64 build),
# fetched with `npm pack` and unpacked with `tar`: no package install scripts
# run. Its sha256 is pinned below; a library that does not match is refused.
# Running the script again does nothing when the library is already in place
# and matches. Works from any directory.
#
# To bump the version: change ORT_VERSION, run the script once with
# ORT_SHA256 set to the empty string, and pin the sha256 it reports.
set -euo pipefail

ORT_VERSION="1.30.0"
ORT_SHA256="ffb75a925ba05e47b235bb66e3e3911714a80b328a9c9425539feb204aa32a23"
NPM_PACKAGE="onnxruntime-node@${ORT_VERSION}"
MEMBER="package/bin/napi-v6/linux/x64/libonnxruntime.so.1"

die() {
	echo "fetch-onnxruntime: $*" >&2
	exit 1
}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest_dir="${CACHE_DIR:-${root}/.cache}/onnxruntime/${ORT_VERSION}"
dest="${dest_dir}/libonnxruntime.so"

sha256_of() {
	sha256sum "$1" | cut -d' ' -f1
}

hint() {
	echo "${dest}"
	echo "fetch-onnxruntime: understudy finds it there (or set UNDERSTUDY_ORT_LIB=${dest}, or onnxruntime.library in the config)" >&2
}

case "$(uname -s)/$(uname -m)" in
Linux/x86_64 | Linux/amd64) ;;
*) die "only Linux x86_64 is supported (got $(uname -s)/$(uname -m)); install ONNX Runtime ${ORT_VERSION} yourself and set UNDERSTUDY_ORT_LIB to its libonnxruntime.so" ;;
esac

if [[ -f "${dest}" && "$(sha256_of "${dest}")" == "${ORT_SHA256}" ]]; then
	hint
	exit 0
fi

command -v npm >/dev/null 2>&1 || die "npm is needed to fetch ${NPM_PACKAGE} (apt-get install -y npm)"
command -v tar >/dev/null 2>&1 || die "tar is needed to unpack ${NPM_PACKAGE}"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum is needed to check the library"

tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT

echo "fetch-onnxruntime: fetching ${NPM_PACKAGE} with npm pack (about 110 MB)" >&2
(cd "${tmp}" && npm pack "${NPM_PACKAGE}" --ignore-scripts --silent >pack.log 2>&1) ||
	die "npm pack ${NPM_PACKAGE} failed: $(tail -n 5 "${tmp}/pack.log")"
tarball="$(find "${tmp}" -maxdepth 1 -name 'onnxruntime-node-*.tgz' | head -n 1)"
[[ -n "${tarball}" ]] || die "npm pack ${NPM_PACKAGE} produced no tarball"

tar -xzf "${tarball}" -C "${tmp}" "${MEMBER}" ||
	die "${tarball##*/} has no ${MEMBER}"

got="$(sha256_of "${tmp}/${MEMBER}")"
if [[ -n "${ORT_SHA256}" && "${got}" != "${ORT_SHA256}" ]]; then
	die "sha256 mismatch for ${MEMBER} from ${NPM_PACKAGE}: got ${got}, want ${ORT_SHA256}"
fi
[[ -n "${ORT_SHA256}" ]] || echo "fetch-onnxruntime: no sha256 pinned; got ${got}" >&2

mkdir -p "${dest_dir}"
install -m 0644 "${tmp}/${MEMBER}" "${dest}.tmp"
mv -f "${dest}.tmp" "${dest}"
ln -sf libonnxruntime.so "${dest_dir}/libonnxruntime.so.1"
hint
