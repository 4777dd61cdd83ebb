module layotto.test/dapr_enc_v1

go 1.26

require github.com/dapr/kit v0.17.1
