#!/bin/bash
# The stand-in image's entrypoint, at the path and with the contract of TF Serving's own
# (/usr/bin/tf_serving_entrypoint.sh): gRPC on 8500, REST on 8501, the model MODEL_NAME from
# MODEL_BASE_PATH/MODEL_NAME, then the container's arguments (the service's flags) appended.
# Inside a container the stand-in must listen on the container's interfaces; Compose and the
# runner publish its ports on 127.0.0.1 only.
exec python -m standin --port=8500 --rest_api_port=8501 \
	--model_name="${MODEL_NAME}" --model_base_path="${MODEL_BASE_PATH}/${MODEL_NAME}" \
	--bind_address=0.0.0.0 "$@"
