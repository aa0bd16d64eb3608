# Doxygen input filter: the headers document themselves in plain // comments, which Doxygen
# skips. This turns them into /// comments on the fly, keeping every line where it is (so
# warnings point at the right line):
# - the comment block that opens a file documents the file (\file, with no name, ends its first
#   line);
# - a comment on lines of its own documents what follows it;
# - a comment after a declaration's ';' or an enum value's ',' documents that member (///<).
{
    line = $0
    if (!seen_code && match(line, /^[ \t]*\/\//)) {
        rest = substr(line, RLENGTH + 1)
        if (!opened) {
            print "///" rest " \\file"
            opened = 1
        } else {
            print "///" rest
        }
        next
    }
    if (line !~ /^[ \t]*$/) seen_code = 1
    if (match(line, /^[ \t]*\/\//)) {
        print substr(line, 1, RLENGTH - 2) "///" substr(line, RLENGTH + 1)
        next
    }
    if (match(line, /[;,][ \t]+\/\/ /)) {
        head = substr(line, 1, RSTART + RLENGTH - 4)
        print head "///<" substr(line, RSTART + RLENGTH - 1)
        next
    }
    print line
}
