# cmake -DINPUT=FILE -DOUTPUT=HEADER -DNAME=kSymbol -P EmbedFile.cmake
# Writes HEADER defining `static const unsigned char NAME[]` with FILE's bytes and
# `static const unsigned long NAMESize`, so the binary carries the file without a build step.
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" hex_len)
math(EXPR size "${hex_len} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${INPUT} by cmake/EmbedFile.cmake; do not edit.\n#pragma once\n"
  "static const unsigned char ${NAME}[] = {\n${bytes}0x00};\n"
  "static const unsigned long ${NAME}Size = ${size};\n")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
