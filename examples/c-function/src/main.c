/* A function: reads text on stdin and writes it back upper-cased, followed
 * by a line counting the bytes it read. */
#include <ctype.h>
#include <stdio.h>

int main(void) {
    unsigned long count = 0;
    int c;
    while ((c = getchar()) != EOF) {
        putchar(toupper(c));
        count++;
    }
    printf("\n[%lu bytes]\n", count);
    return 0;
}
