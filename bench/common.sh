# Shared by bench/compare.sh and bench/profile.sh (sourced, not run).

# install_missing PACKAGE...: installs the Debian packages given.
install_missing() {
    [ $# -gt 0 ] || return 0
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@"
}

# free_port: a TCP port on loopback that nothing uses now, nor the three
# after it (sockchat's web, TLS and IRC doors go there), nor UDP on it.
free_port() {
    python3 - <<'PY'
import socket
while True:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    taken = []
    try:
        for kind, offset in ((socket.SOCK_STREAM, 0), (socket.SOCK_DGRAM, 0),
                             (socket.SOCK_STREAM, 1), (socket.SOCK_STREAM, 2),
                             (socket.SOCK_STREAM, 3)):
            sock = socket.socket(socket.AF_INET, kind)
            taken.append(sock)
            sock.bind(("127.0.0.1", port + offset))
    except OSError:
        continue
    finally:
        for sock in taken:
            sock.close()
    print(port)
    break
PY
}

# wait_for_port PORT [TRIES]: until something accepts on it (0.1 s apart).
wait_for_port() {
    for _ in $(seq "${2:-100}"); do
        if python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "server on port $1 did not start" >&2
    return 1
}
