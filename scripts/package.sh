#!/bin/bash
# Builds Torch's packages from the workspace:
#   target/debian/torch_VERSION-1_ARCH.deb          (cargo-deb)
#   target/generate-rpm/torch-VERSION-1.ARCH.rpm    (cargo-generate-rpm)
# plus target/debian/upgrade/ with the same build at Debian revision 2, which
# the packaging tests install over the first to exercise an upgrade.
# Installs the pinned packaging tools when they are missing
# (scripts/package.sh --tools: only that).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1
have_version() { command -v "$1" >/dev/null && "$1" --version 2>/dev/null | grep -q "$2"; }
have_version cargo-deb "$CARGO_DEB_VERSION" || cargo install --locked cargo-deb --version "$CARGO_DEB_VERSION"
have_version cargo-generate-rpm "$CARGO_GENERATE_RPM_VERSION" || cargo install --locked cargo-generate-rpm --version "$CARGO_GENERATE_RPM_VERSION"
[ "${1:-}" = --tools ] && exit 0

echo "package: building release binaries"
cargo build --release --bins -p torch -p torch-agent -p torchd -p torch-metrics -p torch-alerts -p torch-web
gen=target/release/generated
rm -rf "$gen"
target/release/torch generate-docs "$gen"
gzip -9n "$gen"/man/*.1

rm -rf target/debian
cargo deb -p torch --no-build --deb-revision 2 --output target/debian/upgrade/
cargo deb -p torch --no-build --output target/debian/
cargo generate-rpm -p cli/torch
ls -l target/debian/*.deb target/debian/upgrade/*.deb target/generate-rpm/*.rpm
