/* udp_blast: statsd datagram generator.
 * usage: udp_blast HOST PORT SECONDS RATE_PER_S LINE [LINE ...]
 * Sends the LINEs as datagrams, one line each, cycling through them, for
 * SECONDS; RATE_PER_S 0 sends as fast as it can (sendmmsg, 64 at a time),
 * otherwise paced by the clock. One core of it sends well over a million small
 * datagrams a second, more than a Python server on another core can take.
 * Prints "window-start" (flushed) once the socket is ready (bench/_harness.py
 * samples CPU times then), and at the end: sent= secs= rate_per_s= send_errors=
 * ("sent" counts only datagrams the kernel accepted). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: %s HOST PORT SECONDS RATE_PER_S LINE [LINE ...]\n", argv[0]);
    return 2;
  }
  const char *host = argv[1];
  int port = atoi(argv[2]);
  double seconds = atof(argv[3]);
  double rate = atof(argv[4]);
  char **lines = argv + 5;
  int nlines = argc - 5;
  if (port < 1 || port > 65535 || seconds <= 0 || seconds > 3600 || rate < 0) {
    fprintf(stderr, "bad args\n");
    return 2;
  }

  struct sockaddr_in sa = {0};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) { fprintf(stderr, "bad host (IPv4 literal)\n"); return 2; }
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("connect"); return 1; }

  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  long long sent = 0, errs = 0;
  int k = 0;
  printf("window-start\n");
  fflush(stdout);
  double t0 = now_s(), deadline = t0 + seconds;
  for (;;) {
    double t = now_s();
    if (t >= deadline) break;
    int b = BATCH;
    if (rate > 0) {
      long long due = (long long)((t - t0) * rate) - sent;
      if (due <= 0) {
        struct timespec ts = {0, 50000};
        nanosleep(&ts, NULL);
        continue;
      }
      if (due < b) b = (int)due;
    }
    for (int i = 0; i < b; i++) {
      int j = (k + i) % nlines;
      iov[i].iov_base = lines[j];
      iov[i].iov_len = strlen(lines[j]);
      memset(&msgs[i].msg_hdr, 0, sizeof(struct msghdr));
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int r = sendmmsg(fd, msgs, b, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      errs++; /* ENOBUFS, ECONNREFUSED (nobody listening yet): not sent */
      continue;
    }
    k = (k + r) % nlines;
    sent += r;
  }
  double el = now_s() - t0;
  printf("sent=%lld secs=%.3f rate_per_s=%.0f send_errors=%lld\n", sent, el, sent / el, errs);
  close(fd);
  return sent > 0 ? 0 : 1;
}
