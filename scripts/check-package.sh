#!/usr/bin/env bash
# Checks a built leaktest .deb: lintian reports no errors, the file list is
# the expected one, Depends names libpcap, and the binary from an extracted
# tree runs (--version) and its manual page renders with man -l.
set -euo pipefail
deb="$1"
fail() { echo "check-package: $*" >&2; exit 1; }
lintian --fail-on error --tag-display-limit 0 "$deb" || fail "lintian reported errors"
files=$(dpkg-deb --contents "$deb" | awk '{print $6}' | sed 's#^\./#/#' | grep -v '/$' | sort)
for want in /usr/bin/leaktest \
  /usr/share/man/man1/leaktest.1.gz /usr/share/man/man1/leaktest-probe.1.gz \
  /usr/share/man/man1/leaktest-watch.1.gz /usr/share/man/man1/leaktest-lab.1.gz \
  /usr/share/man/man1/leaktest-tor-restore.1.gz \
  /usr/share/bash-completion/completions/leaktest /usr/share/zsh/vendor-completions/_leaktest \
  /usr/share/fish/vendor_completions.d/leaktest.fish /usr/share/doc/leaktest/README.md \
  /usr/share/doc/leaktest/copyright /usr/share/doc/leaktest/changelog.Debian.gz \
  /usr/lib/tmpfiles.d/leaktest.conf; do
  grep -qx "$want" <<<"$files" || fail "missing $want; the package holds:
$files"
done
extra=$(grep -v -e '^/usr/bin/leaktest$' -e '^/usr/share/man/man1/leaktest.*\.1\.gz$' \
  -e '^/usr/share/bash-completion/' -e '^/usr/share/zsh/' -e '^/usr/share/fish/' \
  -e '^/usr/share/doc/leaktest/' -e '^/usr/lib/tmpfiles.d/leaktest.conf$' <<<"$files" || true)
[ -z "$extra" ] || fail "unexpected files: $extra"
depends=$(dpkg-deb --field "$deb" Depends)
grep -q 'libpcap0.8' <<<"$depends" || fail "Depends lacks libpcap0.8: $depends"
grep -q 'adduser' <<<"$depends" || fail "Depends lacks adduser (postinst creates the leaktest user): $depends"
dpkg-deb --info "$deb" postinst | grep -q 'adduser --system --ingroup nogroup' \
  || fail "postinst does not create the leaktest user"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp"
version=$("$tmp/usr/bin/leaktest" --version)
[ "$version" = "leaktest $(dpkg-deb --field "$deb" Version | sed 's/-[0-9]*$//')" ] || fail "--version says: $version"
warnings=$(MANWIDTH=80 LC_ALL=C.UTF-8 man --warnings -l "$tmp/usr/share/man/man1/leaktest-watch.1.gz" 2>&1 >/dev/null)
[ -z "$warnings" ] || fail "man -l warns: $warnings"
MANWIDTH=80 LC_ALL=C.UTF-8 man -l "$tmp/usr/share/man/man1/leaktest-watch.1.gz" | grep -qx 'EXIT STATUS' || fail "no EXIT STATUS"
echo "check-package: $deb: lintian clean of errors, $(wc -l <<<"$files") files as expected, Depends: $depends, $version"
