// SPDX-License-Identifier: GPL-2.0
/*
 * pagefault: per-page cost of faulting in and freeing anonymous memory.
 *
 *   pagefault MB ROUNDS
 *
 * Each round maps MB of anonymous memory (4 KiB pages, no THP), writes one
 * byte per page, and unmaps it. Prints one JSON object: the nanoseconds per
 * page of every round (CLOCK_MONOTONIC; under QEMU -icount shift=0 that is
 * one nanosecond per guest instruction, so the numbers repeat exactly).
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t bytes, pages;
	int rounds;

	if (argc != 3) {
		fprintf(stderr, "usage: pagefault MB ROUNDS\n");
		return 2;
	}
	bytes = strtoul(argv[1], NULL, 10) << 20;
	rounds = atoi(argv[2]);
	pages = bytes / page;
	printf("{\"pages\": %zu, \"ns_per_page\": [", pages);
	for (int r = 0; r < rounds; r++) {
		long long start = now_ns();
		char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED) {
			perror("pagefault: mmap");
			return 1;
		}
		madvise(p, bytes, MADV_NOHUGEPAGE);
		for (size_t off = 0; off < bytes; off += page)
			p[off] = 1;
		munmap(p, bytes);
		printf("%s%.3f", r ? ", " : "", (double)(now_ns() - start) / pages);
	}
	printf("]}\n");
	return 0;
}
