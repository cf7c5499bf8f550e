/** Probes run inside real instances (python3 of the test image). */

/** Prints open, timeout or refused: a TCP connection to argv[2]:argv[3] from the source address argv[1]. */
export const CONNECT_FROM = String.raw`
import socket, sys
s = socket.socket()
s.settimeout(2)
s.bind((sys.argv[1], 0))
try:
    s.connect((sys.argv[2], int(sys.argv[3])))
    print("open")
except socket.timeout:
    print("timeout")
except OSError:
    print("refused")
`;
