// SPDX-License-Identifier: GPL-2.0
/*
 * memhog: fault in anonymous memory so that its cgroup charges pages.
 *
 *   memhog MB            touch MB of memory once, then exit
 *   memhog MB SECONDS    map, touch and unmap MB repeatedly for SECONDS
 *
 * MEMHOG_THP=1 asks for transparent huge pages (MADV_HUGEPAGE), otherwise
 * MADV_NOHUGEPAGE keeps every fault at 4 KiB. MEMHOG_PIPE_MB=N makes each
 * round, while its memory is still mapped, also resize a pipe to N MiB: the
 * kernel kcalloc()s the pipe's buffer array with GFP_KERNEL_ACCOUNT, one
 * large (multi-page, charged in one go) kmalloc for N >= 4. MEMHOG_STOP=PATH
 * ends the loop early once PATH exists. Prints the number of rounds.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Resize a fresh pipe to mb MiB: a kmalloc of mb * 256 pipe_buffers. */
static int big_kmalloc(int mb)
{
	int fds[2], ret = 0;

	if (pipe(fds)) {
		perror("memhog: pipe");
		return -1;
	}
	if (fcntl(fds[0], F_SETPIPE_SZ, mb << 20) < 0) {
		perror("memhog: F_SETPIPE_SZ");
		ret = -1;
	}
	close(fds[0]);
	close(fds[1]);
	return ret;
}

static int touch(size_t bytes, int thp, int pipe_mb)
{
	int ret = 0;

	long page = sysconf(_SC_PAGESIZE);
	char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		perror("memhog: mmap");
		return -1;
	}
	madvise(p, bytes, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	for (size_t off = 0; off < bytes; off += page)
		p[off] = (char)(off / page) | 1;
	if (pipe_mb)
		ret = big_kmalloc(pipe_mb);
	munmap(p, bytes);
	return ret;
}

int main(int argc, char **argv)
{
	const char *thp_env = getenv("MEMHOG_THP");
	const char *stop = getenv("MEMHOG_STOP");
	const char *pipe_env = getenv("MEMHOG_PIPE_MB");
	int pipe_mb = pipe_env ? atoi(pipe_env) : 0;
	int thp = thp_env && !strcmp(thp_env, "1");
	size_t bytes;
	double seconds, end;
	long rounds = 0;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: memhog MB [SECONDS]\n");
		return 2;
	}
	bytes = strtoul(argv[1], NULL, 10) << 20;
	seconds = argc == 3 ? atof(argv[2]) : 0;
	end = now() + seconds;
	do {
		if (touch(bytes, thp, pipe_mb))
			return 1;
		rounds++;
	} while (now() < end && !(stop && access(stop, F_OK) == 0));
	printf("%ld\n", rounds);
	return 0;
}
