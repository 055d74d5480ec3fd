# deps.sh: install what the build, the tests, the demo or the benchmarks
# need, only when it is missing.  Sourced by test/run-tests.sh, test/demo.sh
# and test/bench.sh; each calls ensure_packages with its own list.

# Packages every script needs: the server, its headers, libcurl, OpenSSL,
# the TAP test modules, and Python for the test receiver.
BASE_PACKAGES="postgresql-15 postgresql-server-dev-15 postgresql-client-15
  libcurl4-openssl-dev libssl-dev libipc-run-perl python3 openssl make gcc
  ca-certificates"

ensure_packages() {
	local missing=()
	for pkg in "$@"; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
			missing+=("$pkg")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		echo "missing packages: ${missing[*]}; install them (as root: apt-get install ${missing[*]})" >&2
		return 1
	fi
	echo "installing: ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# PostgreSQL 15's programs come first on PATH.
export PATH="/usr/lib/postgresql/15/bin:$PATH"

# The unprivileged OS user that runs clusters (initdb refuses root).
TEST_USER=${TEST_USER:-postgres}

# Run a command as TEST_USER when root, else as ourselves.  From /, since
# the current directory may be one the test user cannot enter (every path
# given to it is absolute).
as_test_user() {
	if [ "$(id -u)" -eq 0 ]; then
		(cd / && runuser -u "$TEST_USER" -- env PATH="$PATH" "$@")
	else
		"$@"
	fi
}

# The checkout these scripts belong to.
WEBHOOKS_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# Make the throwaway CA and certificates (test/make-certs.sh) in DIR, owned
# by the test user.  Runs as the caller, who can read the checkout: the test
# user may not even enter it (a clone in root's home, mode 700).
make_test_certs() {
	bash "$WEBHOOKS_REPO/test/make-certs.sh" "$1" || return 1
	[ "$(id -u)" -ne 0 ] || chown -R "$TEST_USER": "$1"
}

# Copy the source tree to a fresh folder the test user owns (the checkout
# may sit where that user cannot read, such as under /root); prints it.
stage_tree() {
	local src=$1 dest
	dest=$(mktemp -d /tmp/webhooks-run.XXXXXX)
	tar -C "$src" --exclude=.git --exclude='./tmp_check' --exclude='./results' -cf - . | tar -C "$dest" -xf -
	chmod 755 "$dest"
	[ "$(id -u)" -eq 0 ] && chown -R "$TEST_USER": "$dest"
	echo "$dest"
}

# Install what is missing, then build (with -Werror) and install the
# extension from the checkout at $1.
build_and_install() {
	ensure_packages $BASE_PACKAGES "${@:2}"
	make -s -C "$1"
	if [ "$(id -u)" -eq 0 ]; then
		make -s -C "$1" install >/dev/null
	else
		sudo make -s -C "$1" install >/dev/null
	fi
}
