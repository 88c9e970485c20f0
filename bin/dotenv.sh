# Sourced by bin/start.sh and bin/run.sh: a .env file in the project root, if present, supplies
# variables not already set (see .env.example).
if [ -f .env ]; then
  while IFS='=' read -r name value; do
    [[ "$name" =~ ^[A-Z_][A-Z0-9_]*$ ]] || continue
    value="${value%\"}" && value="${value#\"}"
    [ -n "${!name+x}" ] || export "$name=$value"
  done <.env
fi
