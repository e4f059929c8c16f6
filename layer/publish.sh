#!/bin/sh
# Publishes the layer zips from `make layer` as Lambda layer versions, one
# layer per architecture (sluice-x86_64, sluice-arm64), in one or more
# regions, optionally shared with an account or an organisation, and prints
# the ARN of each version:
#
#   layer/publish.sh [-r REGION]... [-a ACCOUNT_ID | -o ORG_ID] [-n NAME]
#                    [-d DIST_DIR] [-v VERSION] [-R RUNTIMES] [-A ARCHS]
#
#   -r REGION   publish in REGION (repeatable; default: the CLI's region)
#   -a ACCOUNT  let this account (or '*' for everyone) use the versions
#   -o ORG_ID   let every account of this organisation use them
#   -n NAME     layer and zip name prefix (default sluice; sluice-parquet
#               publishes the Parquet build)
#   -d DIR      where the zips are (default layer/dist)
#   -v VERSION  version in the description (default DIR/VERSION)
#   -R LIST     compatible runtimes, space-separated (default: none listed,
#               which means any runtime: the extension is a static binary)
#   -A LIST     architectures (default "x86_64 arm64")
#
# Output, one line per version: ARCH REGION LAYER_VERSION_ARN
set -eu

name=sluice
dist=layer/dist
version=
regions=
account=
org=
runtimes=
archs="x86_64 arm64"

usage() {
	echo "usage:" >&2
	sed -n '7,21s/^# \{0,1\}//p' "$0" >&2
	exit 2
}

while getopts r:a:o:n:d:v:R:A:h opt; do
	case $opt in
	r) regions="$regions $OPTARG" ;;
	a) account=$OPTARG ;;
	o) org=$OPTARG ;;
	n) name=$OPTARG ;;
	d) dist=$OPTARG ;;
	v) version=$OPTARG ;;
	R) runtimes=$OPTARG ;;
	A) archs=$OPTARG ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || usage
if [ -n "$account" ] && [ -n "$org" ]; then
	echo "publish: -a and -o exclude each other" >&2
	exit 2
fi
if [ -z "$version" ]; then
	if [ -f "$dist/VERSION" ]; then
		version=$(cat "$dist/VERSION")
	else
		echo "publish: no $dist/VERSION: run make layer, or pass -v" >&2
		exit 2
	fi
fi

# json_field FIELD: the first value of FIELD in the JSON on stdin (the CLI
# prints one field per line; strings lose their quotes).
json_field() {
	sed -n "s/^[[:space:]]*\"$1\":[[:space:]]*\"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}[[:space:]]*\$/\1/p" | head -n 1
}

for arch in $archs; do
	zip="$dist/$name-$arch.zip"
	if [ ! -f "$zip" ]; then
		echo "publish: $zip missing: run make layer" >&2
		exit 1
	fi
	for region in ${regions:--}; do
		[ "$region" != - ] || region=
		set -- lambda publish-layer-version --output json \
			--layer-name "$name-$arch" \
			--description "sluice $version ($arch): Lambda logs to S3 via the Telemetry API" \
			--license-info "see https://github.com/sluice-logs/sluice" \
			--compatible-architectures "$arch" \
			--zip-file "fileb://$zip"
		if [ -n "$runtimes" ]; then
			# shellcheck disable=SC2086 # one argument per runtime
			set -- "$@" --compatible-runtimes $runtimes
		fi
		if [ -n "$region" ]; then
			set -- "$@" --region "$region"
		fi
		out=$(aws "$@")
		arn=$(printf '%s\n' "$out" | json_field LayerVersionArn)
		num=$(printf '%s\n' "$out" | json_field Version)
		if [ -z "$arn" ] || [ -z "$num" ]; then
			echo "publish: $name-$arch${region:+ in $region}: no LayerVersionArn/Version in the answer" >&2
			exit 1
		fi
		if [ -n "$account" ] || [ -n "$org" ]; then
			set -- lambda add-layer-version-permission --output json \
				--layer-name "$name-$arch" --version-number "$num" \
				--action lambda:GetLayerVersion
			if [ -n "$org" ]; then
				set -- "$@" --statement-id "org-$org" --principal '*' --organization-id "$org"
			else
				sid=$(printf 'account-%s' "$account" | tr -c 'A-Za-z0-9_-' '_')
				set -- "$@" --statement-id "$sid" --principal "$account"
			fi
			if [ -n "$region" ]; then
				set -- "$@" --region "$region"
			fi
			aws "$@" >/dev/null
		fi
		echo "$arch ${region:-default} $arn"
	done
done
