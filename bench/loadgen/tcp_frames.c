/* tcp_frames: length-prefixed (4-byte BE uint32) frame load generator.
 * usage: tcp_frames HOST PORT CONNS WINDOW SECONDS [WARMUP_S=1] [CHECK=1]
 * Each connection keeps WINDOW requests in flight. A request payload is the
 * decimal text of an integer (valid EDN). Responses are parsed from a stream
 * buffer (split/coalesced reads handled). If CHECK, response must equal req+1.
 * One thread, epoll: a few hundred nanoseconds per message, so one core of it
 * outruns a Python server on another core.
 * Prints "window-start" (flushed) when the warm-up ends and the measured window
 * begins (bench/_harness.py samples CPU times then), and at the end:
 * msgs_per_s= p50_us= p99_us= max_us= msgs= secs= conns= window= mismatches= errors= */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HIST_MAX 2000000 /* 2s at 1us resolution */
static uint32_t hist[HIST_MAX + 1];

typedef struct {
  int fd;
  char *in; size_t in_len, in_cap;
  char *out; size_t out_len, out_cap, out_off;
  uint64_t *ts; long long *val; int head, tail, cap; /* ring of in-flight */
  long long next;
  int want_out;
} conn_t;

static uint64_t now_us(void) {
  struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000ull + t.tv_nsec / 1000;
}

static void ensure(char **b, size_t *cap, size_t need) {
  if (need <= *cap) return;
  size_t n = *cap ? *cap : 4096;
  while (n < need) n *= 2;
  *b = realloc(*b, n);
  if (!*b) { perror("realloc"); exit(1); }
  *cap = n;
}

static void queue_req(conn_t *c, uint64_t t) {
  char tmp[32];
  int n = snprintf(tmp, sizeof tmp, "%lld", c->next);
  ensure(&c->out, &c->out_cap, c->out_len + 4 + n);
  uint32_t be = htonl((uint32_t)n);
  memcpy(c->out + c->out_len, &be, 4);
  memcpy(c->out + c->out_len + 4, tmp, n);
  c->out_len += 4 + n;
  c->ts[c->tail] = t; c->val[c->tail] = c->next;
  c->tail = (c->tail + 1) % c->cap;
  c->next++;
}

static int flush_out(conn_t *c) {
  while (c->out_off < c->out_len) {
    ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 1;
      if (errno == EINTR) continue;
      return -1;
    }
    c->out_off += w;
  }
  c->out_off = c->out_len = 0;
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: %s HOST PORT CONNS WINDOW SECONDS [WARMUP_S=1] [CHECK=1]\n", argv[0]);
    return 2;
  }
  const char *host = argv[1];
  int port = atoi(argv[2]), nc = atoi(argv[3]), win = atoi(argv[4]);
  double secs = atof(argv[5]);
  double warm = argc > 6 ? atof(argv[6]) : 1.0;
  int check = argc > 7 ? atoi(argv[7]) : 1;
  if (nc < 1 || win < 1 || secs <= 0 || secs > 3600) { fprintf(stderr, "bad args\n"); return 2; }

  struct sockaddr_in sa = {0};
  sa.sin_family = AF_INET; sa.sin_port = htons(port);
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) { fprintf(stderr, "bad host (IPv4 literal)\n"); return 2; }

  int ep = epoll_create1(0);
  conn_t *cs = calloc(nc, sizeof(conn_t));
  for (int i = 0; i < nc; i++) {
    conn_t *c = &cs[i];
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1; setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("connect"); return 1; }
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    c->cap = win + 1;
    c->ts = calloc(c->cap, sizeof(uint64_t)); c->val = calloc(c->cap, sizeof(long long));
    c->next = (long long)i * 1000000000ll;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
  }
  uint64_t start = now_us();
  for (int i = 0; i < nc; i++) {
    for (int k = 0; k < win; k++) queue_req(&cs[i], start);
    if (flush_out(&cs[i]) < 0) { perror("send"); return 1; }
  }
  uint64_t warm_end = start + (uint64_t)(warm * 1e6);
  uint64_t end = warm_end + (uint64_t)(secs * 1e6);
  long long msgs = 0, mism = 0, errs = 0;
  int marked = 0;
  struct epoll_event evs[256];
  char rbuf[65536];
  int alive = nc;
  while (alive > 0) {
    uint64_t t = now_us();
    if (t >= end) break;
    if (!marked && t >= warm_end) { printf("window-start\n"); fflush(stdout); marked = 1; }
    int timeout = (int)((end - t) / 1000) + 1;
    int n = epoll_wait(ep, evs, 256, timeout > 100 ? 100 : timeout);
    if (n < 0) { if (errno == EINTR) continue; perror("epoll_wait"); break; }
    for (int e = 0; e < n; e++) {
      conn_t *c = &cs[evs[e].data.u32];
      if (c->fd < 0) continue;
      if (evs[e].events & EPOLLOUT) {
        int r = flush_out(c);
        if (r == 0 && c->want_out) {
          struct epoll_event ev = {.events = EPOLLIN, .data.u32 = evs[e].data.u32};
          epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev); c->want_out = 0;
        }
      }
      if (!(evs[e].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) continue;
      int closed = 0;
      for (;;) {
        ssize_t r = recv(c->fd, rbuf, sizeof rbuf, 0);
        if (r < 0) { if (errno == EAGAIN || errno == EWOULDBLOCK) break; if (errno == EINTR) continue; closed = 1; break; }
        if (r == 0) { closed = 1; break; }
        ensure(&c->in, &c->in_cap, c->in_len + r);
        memcpy(c->in + c->in_len, rbuf, r); c->in_len += r;
        if ((size_t)r < sizeof rbuf) break;
      }
      /* parse complete frames */
      size_t off = 0;
      uint64_t tn = now_us();
      while (c->in_len - off >= 4) {
        uint32_t be; memcpy(&be, c->in + off, 4);
        uint32_t len = ntohl(be);
        if (len > (1u << 24)) { errs++; closed = 1; break; }
        if (c->in_len - off - 4 < len) break;
        const char *p = c->in + off + 4;
        if (c->head == c->tail) { errs++; } else {
          uint64_t ts = c->ts[c->head]; long long v = c->val[c->head];
          c->head = (c->head + 1) % c->cap;
          if (check) {
            char tmp[32]; size_t l = len < 31 ? len : 31; memcpy(tmp, p, l); tmp[l] = 0;
            char *endp; long long got = strtoll(tmp, &endp, 10);
            if (endp == tmp || got != v + 1) mism++;
          }
          if (tn >= warm_end) {
            msgs++;
            uint64_t d = tn - ts; hist[d > HIST_MAX ? HIST_MAX : d]++;
          }
          if (tn < end) queue_req(c, tn);
        }
        off += 4 + len;
      }
      if (off) { memmove(c->in, c->in + off, c->in_len - off); c->in_len -= off; }
      if (closed) { epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL); close(c->fd); c->fd = -1; alive--; errs++; continue; }
      int r = flush_out(c);
      if (r < 0) { errs++; }
      else if (r == 1 && !c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = evs[e].data.u32};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev); c->want_out = 1;
      }
    }
  }
  uint64_t stop = now_us();
  double el = (stop - warm_end) / 1e6;
  if (el <= 0) el = 1e-9;
  long long acc = 0, p50 = -1, p99 = -1, mx = 0;
  for (long long i = 0; i <= HIST_MAX; i++) {
    if (!hist[i]) continue;
    acc += hist[i]; mx = i;
    if (p50 < 0 && acc * 100 >= msgs * 50) p50 = i;
    if (p99 < 0 && acc * 100 >= msgs * 99) p99 = i;
  }
  printf("msgs_per_s=%.0f p50_us=%lld p99_us=%lld max_us=%lld msgs=%lld secs=%.2f conns=%d window=%d mismatches=%lld errors=%lld\n",
         msgs / el, p50, p99, mx, msgs, el, nc, win, mism, errs);
  for (int i = 0; i < nc; i++) if (cs[i].fd >= 0) close(cs[i].fd);
  return (msgs > 0 && errs == 0) ? 0 : 1;
}
