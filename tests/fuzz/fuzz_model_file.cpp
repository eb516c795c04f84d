/*
 * fuzz_model_file.cpp — libFuzzer target for the model file header
 * (models/am_file.cpp: am_file_parse, what am_file_read does with a file's
 * bytes, for both kinds) and the config JSON it carries
 * (am_config_parse_strict). Linked without libtorch: the shim's three units
 * that need none of it (am_file, am_config, am_status: c10's headers only).
 *
 * Each input is parsed as it is (magic, version, lengths, sha256), then once
 * more with its sha256 field set to the digest of what follows the header,
 * so that the fuzzer reaches the length checks and the config parser past a
 * checksum it could never guess.
 */
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include <openssl/evp.h>

#include "am_internal.hpp"
#include "err.h"

static void parse(const std::string &buf)
{
	for (am_file_kind kind : {AM_FILE_CHECKPOINT, AM_FILE_MODEL}) {
		am_status st;
		std::string config;
		size_t off = 0, len = 0;
		int rc = am_file_parse("fuzz", kind, buf, &config, &off, &len, &st);
		if (rc < 0) {
			if (rc != st.code || st.msg.empty())
				abort();
			continue;
		}
		if (off < 56 || off + len != buf.size() || off - 56 != config.size())
			abort();
		am_config cfg;
		am_status cst;
		if (am_config_parse_strict(config.c_str(), &cfg, &cst) < 0 && (cst.code == 0 || cst.msg.empty()))
			abort();
	}
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	std::string buf((const char *)data, size);
	parse(buf);
	if (size >= 56) {
		unsigned int dlen = 0;
		if (EVP_Digest(data + 56, size - 56, (unsigned char *)&buf[24], &dlen, EVP_sha256(), nullptr) != 1 ||
		    dlen != 32)
			abort();
		parse(buf);
	}
	return 0;
}
