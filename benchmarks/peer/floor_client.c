/* floor_client: the least a lock-step client can be, for the scaling section's asyncio floor.
 *
 * usage: floor_client PORT NFRAMES UPDATE_BYTES TIMEOUT_S
 *
 * Connects to 127.0.0.1:PORT, sends a 10-byte request (the size of a FramebufferUpdateRequest),
 * then NFRAMES times: reads UPDATE_BYTES bytes (one "update") and sends the next request. No RFB,
 * no decoding: what remains of a client is one read and one write per frame, so a server that
 * answers it (pdum/rfb/bench/floor_server.py) measures what the kernel and the event loop cost
 * per client and frame before any VNC work. alarm() ends it after TIMEOUT_S whatever happens.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: floor_client PORT NFRAMES UPDATE_BYTES TIMEOUT_S\n");
        return 2;
    }
    int port = atoi(argv[1]), nframes = atoi(argv[2]), size = atoi(argv[3]);
    alarm((unsigned)atoi(argv[4]));
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof addr) != 0) {
        perror("floor_client: connect");
        return 1;
    }
    int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char buf[65536], request[10] = {3, 1};
    if (write(s, request, sizeof request) != (ssize_t)sizeof request) return 1;
    for (int k = 0; k < nframes; k++) {
        for (int got = 0; got < size;) {
            ssize_t n = read(s, buf, sizeof buf);
            if (n <= 0) return 1;
            got += (int)n;
        }
        if (write(s, request, sizeof request) != (ssize_t)sizeof request) return 1;
    }
    close(s);
    return 0;
}
