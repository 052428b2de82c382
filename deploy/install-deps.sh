#!/usr/bin/env bash
# Installs every Debian package that streamrec's build, tests, benchmarks and demo need, on
# Debian 12 (bookworm) or 13 (trixie). Idempotent: packages already present are left alone,
# and nothing is fetched when all are. Run as root (or via sudo).
#   SR_MINIMAL_DEPS=1   skip the large developer/benchmark extras (torch, faiss, avro for python)
#   SR_BUILD_DEPS_ONLY=1  only what building streamrec needs (the container's build stage)
# The release comes from /etc/os-release (VERSION_CODENAME), else /etc/debian_version; another
# release is treated as the closest of the two, and the script says so.
# Package names differ between the releases only in clang's runtime (libclang-rt-N-dev must
# match the default clang, 14 on bookworm, 19 on trixie); N is read from the installed clang,
# else from the clang apt would install, else from the release.
# Java and Maven run the tests' Apache Kafka broker (jars from Maven Central): a JRE is added
# only when no `java` of version 11 or newer is on PATH, Maven only when no `mvn` is.
# The deployment checks (tests/deploy) use systemd-analyze (systemd), promtool (prometheus, an
# extra), python3-yaml, groff and man-db for the man page, and node with the npm packages of
# tests/deploy/k8s-validator (installed there by `npm ci` from its lock file, only when
# missing or changed); npm is added only when no `npm` is on PATH.
# CUDA (nvcc, cuBLAS) is not a Debian package here: it comes with the machine image, and the
# build enables the CUDA backend only where nvcc is found.
set -euo pipefail

# ---- release ----------------------------------------------------------------------------
codename=$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release 2>/dev/null | tr -d '"' |
           head -n1) || true
case "$codename" in
  bookworm|trixie) release=$codename ;;
  *)
    # No codename, or not one of the two: /etc/debian_version says which Debian this is or
    # follows ("12.11"; testing/sid and derivatives such as Ubuntu: "trixie/sid", "forky/sid").
    dv=$(cat /etc/debian_version 2>/dev/null || true)
    exact=""
    case "$dv" in
      12|12.*) release=bookworm; exact=1 ;;
      13|13.*) release=trixie; exact=1 ;;
      bookworm*|[0-9]|[0-9].*|1[01]|1[01].*) release=bookworm ;;
      *) release=trixie ;;
    esac
    if [ -n "$codename" ] || [ -z "$exact" ]; then
      echo "install-deps: release '${codename:-unknown}' (debian_version '${dv:-none}') is not" \
           "bookworm or trixie; using the package names of the closest, $release" >&2
    fi
    ;;
esac

# ---- package list -----------------------------------------------------------------------
# clang_major: the major version of the default clang (the clang-N that package `clang`
# depends on), installed if it is, else apt's candidate, else the release's.
clang_major() {
  local n
  n=$(dpkg-query -W -f='${Status}|${Depends}' clang 2>/dev/null |
      sed -n 's/^install ok installed|//p' | grep -o '\bclang-[0-9]\+' | head -n1) || true
  if [ -z "$n" ]; then
    n=$(apt-cache depends clang 2>/dev/null | sed -n 's/^ *Depends: \(clang-[0-9]\+\)$/\1/p' |
        head -n1) || true
  fi
  n=${n#clang-}
  if [ -z "$n" ]; then
    case "$release" in bookworm) n=14 ;; *) n=19 ;; esac
  fi
  echo "$n"
}

# java_ok: a java of version 11 or newer (Kafka 3.9's broker minimum) is on PATH.
java_ok() {
  local v
  command -v java >/dev/null 2>&1 || return 1
  v=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\)[."].*/\1/p' | head -n1)
  [ -n "$v" ] && [ "$v" -ge 11 ]
}

# resolve: fills pkgs (needed) and extra (large, skipped with SR_MINIMAL_DEPS).
resolve() {
  pkgs=(
    build-essential cmake pkg-config git ca-certificates
    librdkafka-dev libavro-dev libjansson-dev librocksdb-dev libuv1-dev libcurl4-openssl-dev
    libopenblas-dev libfaiss-dev libcmocka-dev
    clang llvm "libclang-rt-$(clang_major)-dev"
    kcat python3 python3-numpy python3-confluent-kafka
    systemd python3-yaml groff-base man-db nodejs
  )
  if [ -n "${SR_BUILD_DEPS_ONLY:-}" ]; then
    pkgs=(
      build-essential cmake pkg-config ca-certificates
      librdkafka-dev libavro-dev libjansson-dev librocksdb-dev libuv1-dev
      libopenblas-dev libfaiss-dev
    )
    extra=()
    return
  fi
  java_ok || pkgs+=(default-jre-headless)
  command -v mvn >/dev/null 2>&1 || pkgs+=(maven)
  command -v npm >/dev/null 2>&1 || pkgs+=(npm)
  # Developer/benchmark tools that are large.
  extra=(python3-torch python3-faiss python3-avro prometheus)
  [ -z "${SR_MINIMAL_DEPS:-}" ] || extra=()
}

# find_missing: fills missing with the packages of pkgs + extra that are not installed.
find_missing() {
  missing=()
  local p
  for p in "${pkgs[@]}" "${extra[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
      missing+=("$p")
  done
}

# npm_validator: the Kubernetes manifest validator's packages (tests/deploy/k8s-validator),
# installed from its lock file when absent or when the lock file changed since. Only the
# deploy_kubernetes check needs them: when the npm registry cannot be reached the build, the
# tests and the demo still go on (that check then skips, saying why), except under CI (CI set),
# where the check must run.
npm_validator() {
  local d
  [ -z "${SR_BUILD_DEPS_ONLY:-}" ] || return 0
  d="$(cd "$(dirname "$0")/.." && pwd)/tests/deploy/k8s-validator"
  [ -f "$d/package-lock.json" ] || return 0
  if cmp -s "$d/package-lock.json" "$d/node_modules/.streamrec-lock" 2>/dev/null; then
    return 0
  fi
  echo "install-deps: npm ci in $d"
  if ! (cd "$d" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error); then
    if [ -n "${CI:-}" ]; then
      echo "install-deps: npm ci failed in $d (CI: the Kubernetes manifest check needs it)" >&2
      return 1
    fi
    echo "install-deps: warning: npm ci failed in $d (npm registry unreachable?): everything" \
         "else is installed; the deploy_kubernetes check will skip" >&2
    return 0
  fi
  cp "$d/package-lock.json" "$d/node_modules/.streamrec-lock"
}

resolve
find_missing
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present ($release)"
  npm_validator
  exit 0
fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
# Fresh package lists can name a different default clang than the fallback used before them.
resolve
find_missing
echo "install-deps: $release, installing ${missing[*]}"
$SUDO apt-get install -y --no-install-recommends "${missing[@]}"
echo "install-deps: installed ${missing[*]}"
npm_validator
